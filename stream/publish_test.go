package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
)

// startJS runs an embedded JetStream server for one test and connects to it.
func startJS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	js := natstest.JetStream(t)
	return js.Conn(), js
}

func addStream(t *testing.T, js jetstream.JetStream, name, subjects string) {
	t.Helper()
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{subjects}, Duplicates: time.Hour}); err != nil {
		t.Fatal(err)
	}
}

func newPublisher(t *testing.T, nc *nats.Conn) *Publisher {
	t.Helper()
	p, err := NewPublisher(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// noCallsLeft fails the test if p still waits for answers to a call that
// ended.
func noCallsLeft(t *testing.T, p *Publisher) {
	t.Helper()
	p.mu.Lock()
	left := len(p.calls)
	p.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d calls still registered after they ended", left)
	}
}

func msgsWithIDs(subject string, ids ...string) []*nats.Msg {
	msgs := make([]*nats.Msg, len(ids))
	for i, id := range ids {
		msgs[i] = &nats.Msg{Subject: subject, Data: []byte(`{"n":"` + id + `"}`), Header: nats.Header{jetstream.MsgIDHeader: {id}}}
	}
	return msgs
}

func TestPublisherStoresInOrderAndReportsDuplicates(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ids := make([]string, 250)
	for i := range ids {
		ids[i] = fmt.Sprintf("id-%d", i)
	}
	acks, err := p.Publish(ctx, msgsWithIDs("s.a", ids...))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks {
		if a.Stream != "S" || a.Sequence != uint64(i+1) || a.Duplicate {
			t.Fatalf("ack %d = %+v, want stream S, seq %d, not a duplicate", i, a, i+1)
		}
	}
	// The same ids again, around a new one: the old ones are duplicates
	// with their first sequence, the new one is stored after them.
	acks, err = p.Publish(ctx, msgsWithIDs("s.a", "id-7", "new", "id-0"))
	if err != nil {
		t.Fatal(err)
	}
	want := []jetstream.PubAck{{Stream: "S", Sequence: 8, Duplicate: true}, {Stream: "S", Sequence: 251}, {Stream: "S", Sequence: 1, Duplicate: true}}
	for i := range want {
		if acks[i] != want[i] {
			t.Fatalf("ack %d = %+v, want %+v", i, acks[i], want[i])
		}
	}
	noCallsLeft(t, p)
}

// TestPublisherReadsTheServersPubAcksWithoutEncodingJSON guards the reason
// the Publisher exists: if nats-server changes how it writes a PubAck,
// publishing still works (encoding/json reads it) but the fast path is
// gone, and this test says so.
func TestPublisherReadsTheServersPubAcksWithoutEncodingJSON(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	for _, id := range []string{"a", "a"} { // stored, then a duplicate
		resp, err := nc.RequestMsg(msgsWithIDs("s.x", id)[0], 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ack, ok := parsePubAck(resp.Data)
		if !ok {
			t.Fatalf("the server's PubAck %s is not read by the fast path", resp.Data)
		}
		var want jetstream.PubAck
		if err := json.Unmarshal(resp.Data, &want); err != nil {
			t.Fatal(err)
		}
		if ack != want {
			t.Fatalf("fast path read %s as %+v, encoding/json as %+v", resp.Data, ack, want)
		}
	}
}

func TestParsePubAckAgreesWithEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		fast bool
	}{
		{`{"stream":"S","seq":1}`, true},
		{`{"stream":"PATCHBAY_EVENTS","seq":18446744073709551615}`, true},
		{`{"stream":"S","seq":7,"duplicate":true}`, true},
		{`{"stream":"S","seq":7,"duplicate": true}`, true},
		{`{"stream":"S","domain":"hub","seq":7,"duplicate": true}`, true},
		{`{"stream":"S","domain":"hub","seq":7}`, true},
		{`{"stream":"S","seq":7,"domain":"hub"}`, false},
		{`{"stream":"S","seq":7,"duplicate":  true}`, false},
		{`{"stream":"S","seq":18446744073709551616}`, false}, // overflows
		{`{"stream":"S","seq":01}`, false},
		{`{"stream":"S","seq":}`, false},
		{`{"stream":"S\u0041","seq":1}`, false},
		{`{"stream":"","seq":1}`, false},
		{`{"stream":"S","seq":1,"duplicate":false}`, false},
		{`{"stream":"S","seq":1,"val":"x"}`, false},
		{`{"stream":"S","seq":1} `, false},
		{`{"seq":1,"stream":"S"}`, false},
		{`{"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}}`, false},
		{`{"stream":"S`, false},
		{``, false},
	} {
		ack, ok := parsePubAck([]byte(tc.in))
		if ok != tc.fast {
			t.Errorf("parsePubAck(%s): fast path %v, want %v", tc.in, ok, tc.fast)
			continue
		}
		if !ok {
			continue
		}
		var want jetstream.PubAck
		if err := json.Unmarshal([]byte(tc.in), &want); err != nil {
			t.Fatal(err)
		}
		if ack != want {
			t.Errorf("parsePubAck(%s) = %+v, encoding/json reads %+v", tc.in, ack, want)
		}
	}
}

func FuzzParsePubAck(f *testing.F) {
	f.Add([]byte(`{"stream":"S","seq":1}`))
	f.Add([]byte(`{"stream":"S","domain":"hub","seq":7,"duplicate": true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ack, ok := parsePubAck(b)
		if !ok {
			return
		}
		var want jetstream.PubAck
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path read %q, which is not JSON: %v", b, err)
		}
		if ack != want {
			t.Fatalf("fast path read %q as %+v, encoding/json as %+v", b, ack, want)
		}
	})
}

func TestReadAnswerErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  *nats.Msg
		want error
	}{
		{"no responders", &nats.Msg{Header: nats.Header{"Status": {"503"}}}, errNoResponders},
		{"other status", &nats.Msg{Header: nats.Header{"Status": {"408"}}}, jetstream.ErrInvalidJSAck},
		{"not JSON", &nats.Msg{Data: []byte("+OK")}, jetstream.ErrInvalidJSAck},
		{"no stream", &nats.Msg{Data: []byte(`{"seq":3}`)}, jetstream.ErrInvalidJSAck},
		{"API error", &nats.Msg{Data: []byte(`{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}`)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAnswer(tc.msg)
			if tc.name == "API error" {
				var api *jetstream.APIError
				if !errors.As(err, &api) || api.ErrorCode != 10060 || api.Code != 400 {
					t.Fatalf("err = %v, want the server's APIError 10060", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	ack, err := readAnswer(&nats.Msg{Data: []byte(`{"stream":"S", "seq":3}`)}) // read by encoding/json
	if err != nil || ack.Stream != "S" || ack.Sequence != 3 {
		t.Fatalf("readAnswer with a space = %+v, %v; want stream S seq 3", ack, err)
	}
}

func TestPublisherReturnsTheServersRefusal(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := msgsWithIDs("s.a", "good", "bad")
	msgs[1].Header.Set(jetstream.ExpectedStreamHeader, "OTHER")
	_, err := p.Publish(ctx, msgs)
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != 10060 { // JSStreamNotMatchErr
		t.Fatalf("err = %v, want the server's refusal (10060, the stream does not match) as an APIError", err)
	}
}

func TestPublisherRetriesUntilAStreamAnswers(t *testing.T) {
	nc, js := startJS(t)
	p := newPublisher(t, nc)
	p.retryWait, p.retries = 50*time.Millisecond, 1000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := nc.Stats().InMsgs
	type result struct {
		acks []jetstream.PubAck
		err  error
	}
	done := make(chan result, 1)
	go func() {
		acks, err := p.Publish(ctx, msgsWithIDs("s.a", "x", "y"))
		done <- result{acks, err}
	}()
	// The first answers are "no responders": there is no stream yet.
	for nc.Stats().InMsgs < before+2 {
		select {
		case r := <-done:
			t.Fatalf("Publish ended before any stream existed: %+v, %v", r.acks, r.err)
		case <-ctx.Done():
			t.Fatal("no answer to the first publish")
		case <-time.After(5 * time.Millisecond):
		}
	}
	addStream(t, js, "S", "s.>")
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.acks[0].Sequence != 1 || r.acks[1].Sequence != 2 {
		t.Fatalf("acks = %+v, want sequences 1 and 2 in order", r.acks)
	}
}

// TestPublisherGivesUpWithoutAStream: Publish and PublishMsg send again
// after "no responders", then give up.
func TestPublisherGivesUpWithoutAStream(t *testing.T) {
	for name, publish := range publishers {
		t.Run(name, func(t *testing.T) {
			nc, _ := startJS(t)
			p := newPublisher(t, nc)
			p.retryWait = time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			before := nc.Stats().OutMsgs
			err := publish(ctx, p, msgsWithIDs("nowhere", "x")[0])
			if !errors.Is(err, jetstream.ErrNoStreamResponse) {
				t.Fatalf("err = %v, want ErrNoStreamResponse", err)
			}
			if sent := nc.Stats().OutMsgs - before; sent != uint64(p.retries+1) {
				t.Fatalf("sent %d times, want %d (the first and %d retries)", sent, p.retries+1, p.retries)
			}
		})
	}
}

func TestPublisherWaitEndsWithItsContext(t *testing.T) {
	nc, _ := startJS(t)
	// A responder that never answers a PubAck: the wait ends with ctx.
	quietResponder(t, nc)
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := p.Publish(ctx, msgsWithIDs("quiet.a", "x"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	noCallsLeft(t, p)
}

func TestParseReplyToken(t *testing.T) {
	for _, tc := range []struct {
		s     string
		id    uint64
		k     int
		valid bool
	}{
		{"P.z.12", 35, 12, true},
		{"P.1.0", 1, 0, true},
		{"P.", 0, 0, false},
		{"P.1", 0, 0, false},
		{"P..1", 0, 0, false},
		{"P.1.", 0, 0, false},
		{"P.1.-1", 0, 0, false},
		{"P.!.1", 0, 0, false},
	} {
		id, k, ok := parseReplyToken(tc.s, 2)
		if ok != tc.valid || ok && (id != tc.id || k != tc.k) {
			t.Errorf("parseReplyToken(%q) = %d, %d, %v; want %d, %d, %v", tc.s, id, k, ok, tc.id, tc.k, tc.valid)
		}
	}
}

func TestPublishingNothingReturnsAtOnce(t *testing.T) {
	nc, _ := startJS(t)
	p := newPublisher(t, nc)
	// Nothing answers a call of no messages: one that waited for answers
	// would end with this context's deadline instead.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	acks, err := p.Publish(ctx, nil)
	if err != nil || len(acks) != 0 {
		t.Fatalf("Publish(nothing) = %v, %v; want no acks, no error", acks, err)
	}
}

// TestPublisherSendsNothingOnceItsContextIsDone: Publish and PublishMsg
// send nothing with a done context.
func TestPublisherSendsNothingOnceItsContextIsDone(t *testing.T) {
	for name, publish := range publishers {
		t.Run(name, func(t *testing.T) {
			nc, js := startJS(t)
			addStream(t, js, "S", "s.>")
			p := newPublisher(t, nc)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			before := nc.Stats().OutMsgs
			if err := publish(ctx, p, msgsWithIDs("s.a", "x")[0]); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if sent := nc.Stats().OutMsgs - before; sent != 0 {
				t.Fatalf("sent %d messages with a done context, want 0", sent)
			}
		})
	}
}

// publishers publish one message with Publish and with PublishMsg.
var publishers = map[string]func(context.Context, *Publisher, *nats.Msg) error{
	"Publish": func(ctx context.Context, p *Publisher, m *nats.Msg) error {
		_, err := p.Publish(ctx, []*nats.Msg{m})
		return err
	},
	"PublishMsg": func(ctx context.Context, p *Publisher, m *nats.Msg) error {
		_, err := p.PublishMsg(ctx, m)
		return err
	},
}

// publishData publishes msgs with PublishEncoded, message i's data being
// data[i].
func publishData(ctx context.Context, p *Publisher, stream string, msgs []Message, data []string) ([]jetstream.PubAck, error) {
	return p.PublishEncoded(ctx, stream, msgs, func(i int, buf []byte) ([]byte, error) { return append(buf, data[i]...), nil })
}

// TestPublishEncodedSetsEachMessagesHeaders checks that the one nats.Msg
// and header map PublishEncoded reuses leave each stored message with its
// own subject, data and id (none when it has none), and the expected
// stream; and that ids deduplicate as with Publish.
func TestPublishEncodedSetsEachMessagesHeaders(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := []Message{
		{Subject: "s.a", ID: "id-1"},
		{Subject: "s.bb"},
		{Subject: "s.ccc", ID: "id-3"},
		{Subject: "s.a", ID: "id-1"},
	}
	data := []string{"one", "two", "three", "one again"}
	acks, err := publishData(ctx, p, "S", msgs, data)
	if err != nil {
		t.Fatal(err)
	}
	want := []jetstream.PubAck{{Stream: "S", Sequence: 1}, {Stream: "S", Sequence: 2}, {Stream: "S", Sequence: 3}, {Stream: "S", Sequence: 1, Duplicate: true}}
	for i := range want {
		if acks[i] != want[i] {
			t.Fatalf("ack %d = %+v, want %+v", i, acks[i], want[i])
		}
	}
	str, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs[:3] {
		got, err := str.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got.Subject != m.Subject || string(got.Data) != data[i] || got.Header.Get(jetstream.MsgIDHeader) != m.ID ||
			len(got.Header.Values(jetstream.MsgIDHeader)) != min(len(m.ID), 1) || got.Header.Get(jetstream.ExpectedStreamHeader) != "S" {
			t.Fatalf("seq %d holds %s %q with headers %v; want %+v expecting stream S", i+1, got.Subject, got.Data, got.Header, m)
		}
	}
	noCallsLeft(t, p)
}

func TestPublishEncodedExpectsItsStream(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := publishData(ctx, p, "OTHER", []Message{{Subject: "s.a", ID: "x"}}, []string{"x"})
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != 10060 { // JSStreamNotMatchErr
		t.Fatalf("err = %v, want the server's refusal (10060, the stream does not match) as an APIError", err)
	}
	// Without an expected stream, any stream stores it.
	if acks, err := publishData(ctx, p, "", []Message{{Subject: "s.a", ID: "x"}}, []string{"x"}); err != nil || acks[0].Stream != "S" {
		t.Fatalf("PublishEncoded without a stream = %+v, %v; want stored in S", acks, err)
	}
}

// TestPublishMsgStoresOneMessage checks PublishMsg, the path of one
// message: each PubAck names the stream that stored the message (the
// Publisher reuses the last stream name it read: answers of two streams in
// turn must each keep their own), its sequence and a repeated id.
func TestPublishMsgStoresOneMessage(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	addStream(t, js, "T", "t.>")
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		subject, id, stream string
		seq                 uint64
		dup                 bool
	}{
		{"s.a", "1", "S", 1, false},
		{"s.a", "2", "S", 2, false},
		{"t.a", "1", "T", 1, false},
		{"s.a", "1", "S", 1, true},
		{"t.a", "2", "T", 2, false},
		{"t.a", "2", "T", 2, true},
	} {
		m := msgsWithIDs(tc.subject, tc.id)[0]
		ack, err := p.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Stream != tc.stream || ack.Sequence != tc.seq || ack.Duplicate != tc.dup {
			t.Fatalf("PublishMsg(%s, id %s) = %+v; want stream %s, sequence %d, duplicate %v", tc.subject, tc.id, ack, tc.stream, tc.seq, tc.dup)
		}
	}
	noCallsLeft(t, p)
	// A refusal is the server's error, as with Publish.
	m := msgsWithIDs("s.a", "3")[0]
	m.Header.Set(jetstream.ExpectedStreamHeader, "OTHER")
	var api *jetstream.APIError
	if _, err := p.PublishMsg(ctx, m); !errors.As(err, &api) || api.ErrorCode != 10060 {
		t.Fatalf("err = %v, want the server's refusal (10060) as an APIError", err)
	}
}

func TestPublishEncodedStoresWhatEncodeWrites(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := []string{"one", "a longer second message", "3"}
	msgs := []Message{
		{Subject: "s.a", ID: "id-1"},
		{Subject: "s.bb"},
		{Subject: "s.ccc", ID: "id-3"},
	}
	acks, err := p.PublishEncoded(ctx, "S", msgs, func(i int, buf []byte) ([]byte, error) {
		if len(buf) != 0 {
			t.Errorf("encode(%d) got a buffer holding %q, want it empty", i, buf)
		}
		return append(buf, data[i]...), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	str, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if acks[i] != (jetstream.PubAck{Stream: "S", Sequence: uint64(i + 1)}) {
			t.Fatalf("ack %d = %+v, want S %d", i, acks[i], i+1)
		}
		got, err := str.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got.Subject != m.Subject || string(got.Data) != data[i] || got.Header.Get(jetstream.MsgIDHeader) != m.ID ||
			got.Header.Get(jetstream.ExpectedStreamHeader) != "S" {
			t.Fatalf("seq %d holds %s %q with headers %v; want %s %q with id %q expecting stream S", i+1, got.Subject, got.Data, got.Header, m.Subject, data[i], m.ID)
		}
	}
	noCallsLeft(t, p)
}

func TestPublishEncodedFailsWithEncode(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := errors.New("cannot encode")
	_, err := p.PublishEncoded(ctx, "S", []Message{{Subject: "s.a"}, {Subject: "s.b"}}, func(i int, buf []byte) ([]byte, error) {
		if i == 1 {
			return buf, bad
		}
		return append(buf, 'x'), nil
	})
	if !errors.Is(err, bad) || !strings.Contains(err.Error(), "s.b") {
		t.Fatalf("err = %v, want the encode error, naming s.b", err)
	}
	noCallsLeft(t, p)
}

func TestPublishEncodedEncodesAgainWhatItSendsAgain(t *testing.T) {
	nc, js := startJS(t)
	p := newPublisher(t, nc)
	p.retryWait, p.retries = 50*time.Millisecond, 1000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := nc.Stats().InMsgs
	var encoded atomic.Int64
	done := make(chan error, 1)
	go func() {
		_, err := p.PublishEncoded(ctx, "", []Message{{Subject: "s.a", ID: "x"}}, func(_ int, buf []byte) ([]byte, error) {
			encoded.Add(1)
			return append(buf, "data"...), nil
		})
		done <- err
	}()
	// The first answers are "no responders": there is no stream yet.
	for nc.Stats().InMsgs < before+1 {
		select {
		case err := <-done:
			t.Fatalf("PublishEncoded ended before any stream existed: %v", err)
		case <-ctx.Done():
			t.Fatal("no answer to the first publish")
		case <-time.After(5 * time.Millisecond):
		}
	}
	addStream(t, js, "S", "s.>")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := encoded.Load(); n < 2 {
		t.Fatalf("encoded %d times, want once per send (at least twice)", n)
	}
	m, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.GetMsg(ctx, 1)
	if err != nil || string(got.Data) != "data" {
		t.Fatalf("stored %+v, %v; want data", got, err)
	}
}

// TestStrayRepliesAreIgnored sends a waiting call answers it did not ask
// for: an index past its messages, a call that does not exist, a token
// that is not one. None counts or stops the Publisher (a panic in its
// subscription would end the process); the call's own answer ends it, and
// a second answer to the same message changes nothing.
func TestStrayRepliesAreIgnored(t *testing.T) {
	nc, _ := startJS(t)
	// A responder that never answers: the call waits for the test's.
	quietResponder(t, nc)
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		ack jetstream.PubAck
		err error
	}
	done := make(chan result, 1)
	go func() {
		ack, err := p.PublishMsg(ctx, &nats.Msg{Subject: "quiet.a", Data: []byte("x")})
		done <- result{ack, err}
	}()
	var id uint64
	for id == 0 {
		p.mu.Lock()
		for k := range p.calls {
			id = k
		}
		p.mu.Unlock()
		if err := ctx.Err(); err != nil {
			t.Fatal("the call never started")
		}
		runtime.Gosched()
	}
	call := p.prefix + strconv.FormatUint(id, 36)
	ack := func(seq int) []byte { return []byte(`{"stream":"S","seq":` + strconv.Itoa(seq) + `}`) }
	for _, subj := range []string{call + ".1", call + ".99", p.prefix + strconv.FormatUint(id+1, 36) + ".0", p.prefix + "zz!.0", call + ".x"} {
		if err := nc.Publish(subj, ack(9)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("the call ended on a stray answer: %+v, %v", r.ack, r.err)
	default:
	}
	for _, seq := range []int{5, 6} {
		if err := nc.Publish(call+".0", ack(seq)); err != nil {
			t.Fatal(err)
		}
	}
	r := <-done
	if r.err != nil || r.ack.Sequence != 5 || r.ack.Stream != "S" {
		t.Fatalf("PublishMsg = %+v, %v; want the first answer, seq 5 in S", r.ack, r.err)
	}
}

// quietResponder subscribes to quiet.> on nc, for the test's time, without
// ever answering: a publish there waits for a PubAck that never comes.
func quietResponder(t *testing.T, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.Subscribe("quiet.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// TestPublishEncodedCarriesEachMessagesTraceparent: a message stores its
// own traceparent, and one without any stores none, not the previous
// message's (the header map is reused from message to message).
func TestPublishEncodedCarriesEachMessagesTraceparent(t *testing.T) {
	nc, js := startJS(t)
	addStream(t, js, "S", "s.>")
	p := newPublisher(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const tp3 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	msgs := []Message{
		{Subject: "s.a", ID: "id-1", Traceparent: tp1},
		{Subject: "s.b", ID: "id-2"},
		{Subject: "s.c", Traceparent: tp3},
		{Subject: "s.d"},
	}
	if _, err := publishData(ctx, p, "S", msgs, []string{"1", "2", "3", "4"}); err != nil {
		t.Fatal(err)
	}
	str, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		got, err := str.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got.Header.Get(headerTraceparent) != m.Traceparent || len(got.Header.Values(headerTraceparent)) != min(len(m.Traceparent), 1) ||
			got.Header.Get(jetstream.MsgIDHeader) != m.ID {
			t.Fatalf("seq %d headers %v; want %+v", i+1, got.Header, m)
		}
	}
}
