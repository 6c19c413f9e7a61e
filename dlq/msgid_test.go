package dlq_test

import (
	"context"
	"testing"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestUnmappedLetterDeduplicatesOnItsMsgID: a letter without an origin
// sequence (an unmapped event, dead-lettered at ingest) is stored once
// however often it is published with the same MsgID, and keeps its source
// contact id; a letter without one has none.
func TestUnmappedLetterDeduplicatesOnItsMsgID(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	pub := dlq.NewPublisher(s.JS, "contacts")
	l := letter(0, "unmapped")
	l.Reason, l.Source, l.SourceContactID, l.MsgID = dlq.ReasonUnmapped, "hubspot", "hs-42", "unmapped:hubspot:evt-1"
	for range 3 {
		if err := pub.Publish(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	plain := letter(0, "plain")
	plain.MsgID = "plain:1"
	if err := pub.Publish(ctx, plain); err != nil {
		t.Fatal(err)
	}
	ls, err := dlq.NewStore(s.JS, s.Stream.DLQStream, "contacts").ListSubject(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Fatalf("%d letters after three publishes with one MsgID and one with another, want 2", len(ls))
	}
	if ls[0].SourceContactID != "hs-42" || ls[0].Source != "hubspot" {
		t.Fatalf("unmapped letter read back with source %q, contact %q; want hubspot, hs-42", ls[0].Source, ls[0].SourceContactID)
	}
	if ls[1].SourceContactID != "" {
		t.Fatalf("a letter without a source contact id read back with %q", ls[1].SourceContactID)
	}
}
