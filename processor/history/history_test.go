package history_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor/history"
)

func sampleRecord() history.Record {
	at := time.Date(2026, 11, 25, 10, 1, 0, 123456789, time.UTC)
	return history.Record{
		At: at, Target: events.TargetSkipcall, Contact: "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c",
		Outcome: history.OutcomeApplied, Status: 200,
		Fields: []string{"city", "customFields/tier"}, Repaired: []string{"city"},
		Events: []history.Event{
			{Clock: history.Clock{EventID: "evt-2", OccurredAt: at, Source: "api"}, Seq: 7},
			{Clock: history.Clock{EventID: "évt \"quoted\" <&>", OccurredAt: at.Add(-time.Minute)}},
		},
		Dropped: []history.Dropped{
			{EventID: "evt-2", Field: "firstName", By: history.Clock{EventID: "evt-3", OccurredAt: at.Add(time.Minute), Source: "crm"}, Stored: true},
			{EventID: "évt \"quoted\" <&>", Field: "city", By: history.Clock{EventID: "evt-2", OccurredAt: at, Source: "api"}},
		},
	}
}

// TestAppendJSONIsJSON: the hand-written encoding decodes, with
// encoding/json, to the record it encoded, and is what Marshal writes.
func TestAppendJSONIsJSON(t *testing.T) {
	r := sampleRecord()
	b := r.AppendJSON(nil)
	var back history.Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, r)
	}
	m, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(m) != string(b) {
		t.Fatalf("AppendJSON differs from Marshal:\n%s\n%s", b, m)
	}
	min := history.Record{At: r.At, Target: r.Target, Contact: "c", Outcome: history.OutcomeSuperseded, Events: []history.Event{}}
	if m, _ := json.Marshal(min); string(min.AppendJSON(nil)) != string(m) {
		t.Fatalf("AppendJSON differs from Marshal:\n%s\n%s", min.AppendJSON(nil), m)
	}
}

// TestPerContactCapAndRead: the stream keeps a contact's newest
// PerContact records only, and Read returns them oldest first, each
// contact's alone.
func TestPerContactCapAndRead(t *testing.T) {
	emb := natstest.Server(t)
	js := natstest.Connect(t, emb, t.Name())
	ctx := natstest.Context(t)
	scfg := pbtest.StreamConfig(emb.ClientURL())
	if err := history.Ensure(ctx, js, scfg, history.Config{MaxAge: time.Hour, PerContact: 3}); err != nil {
		t.Fatal(err)
	}
	rec := history.NewRecorder(js.Conn(), scfg.SubjectPrefix)
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	write := func(contact string, n int) {
		for i := range n {
			r := history.Record{At: base.Add(time.Duration(i) * time.Second), Target: events.TargetRevyOps, Contact: contact,
				Outcome: history.OutcomeApplied, Status: 200, Events: []history.Event{{Clock: history.Clock{EventID: fmt.Sprintf("%s-%d", contact, i), OccurredAt: base}}}}
			if err := rec.Record(&r); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("42", 10)
	write("43", 2)
	if err := js.Conn().FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	ids := func(contact string) []string {
		rs, err := history.Read(ctx, js, scfg, events.TargetRevyOps, contact)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.Events[0].EventID)
		}
		return out
	}
	var got []string
	pbtest.Eventually(t, 30*time.Second, "the records stored", func() bool {
		got = ids("42")
		return len(got) == 3 && got[2] == "42-9"
	})
	if want := []string{"42-7", "42-8", "42-9"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("contact 42: %v, want the newest three %v", got, want)
	}
	if got, want := ids("43"), []string{"43-0", "43-1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("contact 43: %v, want %v", got, want)
	}
	if got := ids("44"); len(got) != 0 {
		t.Fatalf("contact 44: %v, want none", got)
	}
}

// TestReadWithoutStream: no stream is ErrNoStream, not an empty history.
func TestReadWithoutStream(t *testing.T) {
	emb := natstest.Server(t)
	js := natstest.Connect(t, emb, t.Name())
	_, err := history.Read(natstest.Context(t), js, pbtest.StreamConfig(emb.ClientURL()), events.TargetSkipcall, "c")
	if !errorsIs(err, history.ErrNoStream) {
		t.Fatalf("err = %v, want ErrNoStream", err)
	}
}

// BenchmarkAppendJSON is the worker's per-delivery cost of a history record
// (encoding; the publish is a write into the connection's buffer).
func BenchmarkAppendJSON(b *testing.B) {
	r := sampleRecord()
	r.Dropped, r.Repaired = nil, nil
	r.Events = r.Events[:1]
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// BenchmarkAppendJSON16 encodes the record of an applied delivery of one
// 16-field event: what the worker writes per delivery with history on.
func BenchmarkAppendJSON16(b *testing.B) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	r := history.Record{
		At: at.Add(time.Second), Target: events.TargetSkipcall, Contact: "0b6c7c8e-6f1d-4a53-9d6e-000000000010",
		Outcome: history.OutcomeApplied, Status: 200,
		Fields: []string{"allowPhoneCalls", "city", "company", "country", "customFields/industry", "customFields/notes",
			"customFields/team_size", "customFields/tier", "email", "firstName", "lastName", "linkedinSalesUrl",
			"linkedinUrl", "phoneNumbers", "role", "url"},
		Events: []history.Event{{Clock: history.Clock{EventID: "0b7e4c6a-evt-00000010", OccurredAt: at, Source: "hubspot"}, Seq: 12345}},
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
}
