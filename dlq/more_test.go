package dlq_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
)

func letter(seq uint64, contact string) dlq.Letter {
	return dlq.Letter{
		Reason: dlq.ReasonExhausted, Attempts: 3, Stream: "PATCHBAY_EVENTS", StreamSeq: seq,
		Subject: "contacts.patch.skipcall." + contact, EventID: fmt.Sprintf("evt-%d", seq), Target: "skipcall",
		Data: eventJSON(fmt.Sprintf("evt-%d", seq), "Ada"),
	}
}

// eventJSON is a valid Skipcall event setting firstName.
func eventJSON(id, firstName string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"target":"skipcall","contact_id":"0b0b0b0b-0000-4000-8000-000000000001","occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":%q}}`, id, firstName))
}

// TestListPagesOldestFirst lists more letters than one fetch (256) returns:
// every letter comes back once, oldest first, and the limit is kept.
func TestListPagesOldestFirst(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	store := dlq.NewStore(s.JS, s.Stream.DLQStream, "contacts")
	if ls, err := store.ListSubject(ctx, "", 10); err != nil || len(ls) != 0 {
		t.Fatalf("empty DLQ listed %d letters, err %v; want none", len(ls), err)
	}
	pub := dlq.NewPublisher(s.JS, "contacts")
	const n = 300
	for i := 1; i <= n; i++ {
		if err := pub.Publish(ctx, letter(uint64(i), fmt.Sprintf("c%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	all, err := store.ListSubject(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("listed %d letters, want all %d", len(all), n)
	}
	for i, l := range all {
		if l.StreamSeq != uint64(i+1) || l.DLQSeq != uint64(i+1) {
			t.Fatalf("letter %d is original seq %d at DLQ seq %d: not oldest first", i, l.StreamSeq, l.DLQSeq)
		}
	}
	if ls, err := store.ListSubject(ctx, "", 270); err != nil || len(ls) != 270 || ls[269].StreamSeq != 270 {
		t.Fatalf("List(limit 270) gave %d letters (err %v), want the oldest 270", len(ls), err)
	}
	if ls, err := store.ListSubject(ctx, "", 0); err != nil || len(ls) != 100 {
		t.Fatalf("List(limit 0) gave %d letters (err %v), want the default 100", len(ls), err)
	}
	if ls, err := store.ListSubject(ctx, "contacts.dlq.skipcall.c7", 10); err != nil || len(ls) != 1 || ls[0].StreamSeq != 7 {
		t.Fatalf("filtered List gave %+v (err %v), want only the letter of c7", ls, err)
	}
	// Newest first, across the backward windows of sequences List reads.
	if res, err := store.List(ctx, dlq.Filter{ContactID: "c7"}, dlq.Page{Limit: 5}); err != nil || len(res.Letters) != 1 || res.Letters[0].DLQSeq != 7 || res.Next != 0 {
		t.Fatalf("List(contact c7) gave %+v (err %v), want the letter at 7 and no next page", res, err)
	}
	want := uint64(n)
	for page := (dlq.Page{Limit: 120}); ; {
		res, err := store.List(ctx, dlq.Filter{}, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Letters {
			if l.DLQSeq != want {
				t.Fatalf("page from %d: letter %d, want %d (newest first, none skipped)", page.Before, l.DLQSeq, want)
			}
			want--
		}
		if res.Next == 0 {
			break
		}
		page.Before = res.Next
	}
	if want != 0 {
		t.Fatalf("pages ended above sequence %d", want)
	}
}

// TestReplayRepeatedEnqueuesOnce: a replay repeated after a crash between
// its publish and its delete puts the event back once.
func TestReplayRepeatedEnqueuesOnce(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	if err := dlq.NewPublisher(s.JS, "contacts").Publish(ctx, letter(9, "abc")); err != nil {
		t.Fatal(err)
	}
	store := dlq.NewStore(s.JS, s.Stream.DLQStream, "contacts")
	ls, err := store.ListSubject(ctx, "", 10)
	if err != nil || len(ls) != 1 {
		t.Fatalf("listed %d letters (err %v), want 1", len(ls), err)
	}
	// The first replay's publish, as it went out before the crash.
	first := nats.NewMsg("contacts.patch.skipcall.abc")
	first.Data = ls[0].Data
	if _, err := s.JS.PublishMsg(ctx, first, jetstream.WithMsgID(dlq.ReplayMsgID(s.Stream.DLQStream, ls[0].DLQSeq, ls[0].EventID))); err != nil {
		t.Fatal(err)
	}
	if err := store.ReplayOne(ctx, ls[0].DLQSeq, nil); err != nil {
		t.Fatal(err)
	}
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 1 {
		t.Fatalf("events stream holds %d copies after a repeated replay, want 1", n)
	}
	if n := s.StreamMsgs(s.Stream.DLQStream); n != 0 {
		t.Fatalf("DLQ still holds %d letters after the replay", n)
	}
	str, err := s.JS.Stream(ctx, s.Stream.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := str.GetLastMsgForSubject(ctx, "contacts.patch.skipcall.abc")
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != string(ls[0].Data) {
		t.Fatalf("replayed payload %q, want the original %q", m.Data, ls[0].Data)
	}
}

// TestPublishHeaders checks what a dead letter keeps when fields are empty,
// cut or not valid UTF-8, and that only letters with an origin sequence
// are deduplicated.
func TestPublishHeaders(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	pub := dlq.NewPublisher(s.JS, "contacts")
	l := letter(0, "noseq")                     // no stream sequence: no message id
	l.Excerpt = "x" + strings.Repeat("é", 1000) // 2001 bytes: the cut at 1024 falls inside a rune
	l.ErrorMessage = "bad \xff by\x7fte"
	for range 2 {
		if err := pub.Publish(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	ls, err := dlq.NewStore(s.JS, s.Stream.DLQStream, "contacts").ListSubject(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Fatalf("%d letters for two publishes without an origin sequence, want 2 (nothing to deduplicate on)", len(ls))
	}
	got := ls[0]
	if !utf8.ValidString(got.Excerpt) || len(got.Excerpt) != dlq.MaxExcerpt-1 {
		t.Fatalf("excerpt cut to %d bytes, valid UTF-8 %v; want %d: cut at %d inside a rune, then back to its start", len(got.Excerpt), utf8.ValidString(got.Excerpt), dlq.MaxExcerpt-1, dlq.MaxExcerpt)
	}
	if got.ErrorMessage != "bad \uFFFD by te" {
		t.Fatalf("error message %q, want invalid bytes replaced and DEL blanked", got.ErrorMessage)
	}
	if got.Status != 0 || got.Detail != "" || !got.FirstAttempt.IsZero() || got.Attempts != 3 || got.Reason != dlq.ReasonExhausted {
		t.Fatalf("letter %+v: empty fields must stay empty, attempts 3, reason retries_exhausted", got)
	}
	if got.DeadAt.IsZero() {
		t.Fatal("a letter read back has no time it was stored")
	}
}
