package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestBatchAnswerNamesEachEventsSeq checks the 202 of a batch event by
// event: each entry has its own id, in request order, and the seq of the
// stream message that holds exactly that event; a batch repeating stored
// ids answers them as duplicates with their original seq.
func TestBatchAnswerNamesEachEventsSeq(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	const n = 20
	var batch []map[string]any
	for i := range n {
		ev := skipEvent(fmt.Sprintf("seq-%d", i))
		if i%2 == 1 {
			// Events of both targets and contacts of several lengths, so
			// that each message's subject and data are its own.
			ev["target"], ev["contact_id"], ev["patch"] = "revyops", strings.Repeat("7", 1+i/2), map[string]any{"first_name": strings.Repeat("a", i)}
		}
		batch = append(batch, ev)
	}
	code, body := s.Post(mustJSON(t, batch), nil)
	if code != http.StatusAccepted {
		t.Fatalf("batch answered %d, want 202: %s", code, body)
	}
	var acc ingest.Accepted
	if err := json.Unmarshal(body, &acc); err != nil {
		t.Fatal(err)
	}
	if acc.Accepted != n || len(acc.Events) != n {
		t.Fatalf("answer counts %d accepted, %d entries; want %d of each", acc.Accepted, len(acc.Events), n)
	}
	str, err := s.JS.Stream(ctx, s.Stream.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	first := map[string]uint64{}
	for i, e := range acc.Events {
		want := fmt.Sprintf("seq-%d", i)
		if e.ID != want || e.Duplicate {
			t.Fatalf("entry %d is %+v, want id %s, not a duplicate", i, e, want)
		}
		if e.Seq == 0 || seen[e.Seq] {
			t.Fatalf("entry %d (%s) has seq %d: zero or shared with another event", i, e.ID, e.Seq)
		}
		seen[e.Seq] = true
		first[e.ID] = e.Seq
		m, err := str.GetMsg(ctx, e.Seq)
		if err != nil {
			t.Fatalf("entry %d names seq %d, which the stream does not hold: %v", i, e.Seq, err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != e.ID {
			t.Fatalf("seq %d holds event %q, the answer says %q", e.Seq, got, e.ID)
		}
		if got := m.Header.Get(jetstream.ExpectedStreamHeader); got != s.Stream.EventsStream {
			t.Fatalf("seq %d was published expecting stream %q, want %q", e.Seq, got, s.Stream.EventsStream)
		}
		stored, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("seq %d holds %s: %v", e.Seq, m.Data, err)
		}
		wantPatch, _ := json.Marshal(batch[i]["patch"])
		if stored.ID != e.ID || m.Subject != stored.Subject(s.Stream.SubjectPrefix) || string(stored.Patch) != string(wantPatch) {
			t.Fatalf("seq %d holds %s on %s; want event %s with patch %s on its own subject", e.Seq, m.Data, m.Subject, e.ID, wantPatch)
		}
		if want := fmt.Sprint(batch[i]["contact_id"]); stored.ContactID != want {
			t.Fatalf("seq %d holds contact %q, want %q", e.Seq, stored.ContactID, want)
		}
	}

	// A retried batch with one new event: the stored ones are duplicates
	// answered with their original seq, the new one gets a new seq.
	retry := append(batch[:3:3], skipEvent("seq-new"))
	code, body = s.Post(mustJSON(t, retry), nil)
	if code != http.StatusAccepted {
		t.Fatalf("retried batch answered %d, want 202: %s", code, body)
	}
	acc = ingest.Accepted{}
	if err := json.Unmarshal(body, &acc); err != nil {
		t.Fatal(err)
	}
	for i, e := range acc.Events[:3] {
		if !e.Duplicate || e.Seq != first[e.ID] {
			t.Fatalf("retried entry %d is %+v, want duplicate with the original seq %d", i, e, first[e.ID])
		}
	}
	if last := acc.Events[3]; last.ID != "seq-new" || last.Duplicate || seen[last.Seq] || last.Seq == 0 {
		t.Fatalf("new entry in the retried batch is %+v, want a fresh seq", last)
	}
	if got := s.StreamMsgs(s.Stream.EventsStream); got != n+1 {
		t.Fatalf("stream holds %d events after the retry, want %d", got, n+1)
	}
}
