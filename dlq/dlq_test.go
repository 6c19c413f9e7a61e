package dlq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
)

func TestSubject(t *testing.T) {
	cases := map[string]string{
		"contacts.patch.skipcall.abc": "contacts.dlq.skipcall.abc",
		"contacts.patch.revyops.42":   "contacts.dlq.revyops.42",
		"contacts.patch.":             "contacts.dlq.unknown",
		"other.patch.revyops.42":      "contacts.dlq.unknown",
	}
	for in, want := range cases {
		if got := dlq.Subject("contacts", in); got != want {
			t.Errorf("Subject(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPublishListReplay(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	pub := dlq.NewPublisher(s.JS, "contacts")
	first := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	l := dlq.Letter{
		Reason: dlq.ReasonRejected, Detail: "line one\r\nline two", Status: 404, ErrorCode: "NOT_FOUND",
		ErrorMessage: "Contact not found", Excerpt: strings.Repeat("x", 5000), Attempts: 1,
		FirstAttempt: first, LastAttempt: first.Add(time.Second), Stream: "PATCHBAY_EVENTS", StreamSeq: 7,
		Subject: "contacts.patch.skipcall.abc", EventID: "evt-7", Target: "skipcall", Data: eventJSON("evt-7", "Ada"),
	}
	if err := pub.Publish(ctx, l); err != nil {
		t.Fatal(err)
	}
	// A crash between dead-lettering and Term repeats the publish: one letter.
	if err := pub.Publish(ctx, l); err != nil {
		t.Fatal(err)
	}
	store := dlq.NewStore(s.JS, s.Stream.DLQStream, "contacts")
	ls, err := store.ListSubject(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 {
		t.Fatalf("%d letters, want 1", len(ls))
	}
	got := ls[0]
	if got.Reason != l.Reason || got.Status != 404 || got.ErrorCode != "NOT_FOUND" || got.EventID != "evt-7" ||
		got.StreamSeq != 7 || !got.FirstAttempt.Equal(first) || got.DLQTopic != "contacts.dlq.skipcall.abc" || string(got.Data) != string(l.Data) {
		t.Fatalf("letter read back as %+v", got)
	}
	if strings.ContainsAny(got.Detail, "\r\n") || len(got.Excerpt) != dlq.MaxExcerpt {
		t.Fatalf("headers not made safe: detail %q, excerpt %d bytes", got.Detail, len(got.Excerpt))
	}
	if ls, _ := store.ListSubject(ctx, "contacts.dlq.revyops.>", 10); len(ls) != 0 {
		t.Fatalf("subject filter ignored: %d letters", len(ls))
	}

	fixed := eventJSON("evt-7", "Grace")
	if err := store.ReplayOne(ctx, got.DLQSeq, fixed); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Show(ctx, got.DLQSeq); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("letter still there after replay: %v", err)
	}
	if err := store.ReplayOne(ctx, got.DLQSeq, nil); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("second replay: %v, want ErrNotFound", err)
	}
	str, err := s.JS.Stream(ctx, s.Stream.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := str.GetLastMsgForSubject(ctx, "contacts.patch.skipcall.0b0b0b0b-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != string(fixed) || msg.Header.Get(jetstream.MsgIDHeader) == "" {
		t.Fatalf("replayed message %q headers %v", msg.Data, msg.Header)
	}
}
