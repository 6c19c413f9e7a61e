package processor

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// TestCommitContext: storing the clocks of an applied PATCH outlives a
// shutdown (the commit's context is not cancelled with the delivery's)
// but not the lease the delivery ran under: its deadline is the
// delivery's, or the fence when that is earlier, or 5 s without either.
func TestCommitContext(t *testing.T) {
	now := time.Now()
	delivery, cancel := context.WithDeadline(context.Background(), now.Add(time.Minute))
	cancel() // the worker is shutting down
	ctx, stop := commitContext(delivery)
	defer stop()
	if err := ctx.Err(); err != nil {
		t.Fatalf("the commit's context ended with the delivery's: %v", err)
	}
	if got, ok := ctx.Deadline(); !ok || !got.Equal(now.Add(time.Minute)) {
		t.Fatalf("deadline %v (%v), want the delivery's, %v", got, ok, now.Add(time.Minute))
	}

	fence := now.Add(10 * time.Second)
	fctx, cancel := context.WithDeadline(ratelimit.WithFence(context.Background(), func() time.Time { return fence }), now.Add(time.Minute))
	defer cancel()
	ctx, stop = commitContext(fctx)
	defer stop()
	if got, ok := ctx.Deadline(); !ok || !got.Equal(fence) {
		t.Fatalf("deadline %v (%v), want the fence, %v", got, ok, fence)
	}

	before := time.Now()
	ctx, stop = commitContext(context.Background())
	defer stop()
	after := time.Now()
	if got, ok := ctx.Deadline(); !ok || got.Before(before.Add(5*time.Second)) || got.After(after.Add(5*time.Second)) {
		t.Fatalf("deadline %v (%v) without a deadline or fence, want 5 s from %v", got, ok, before)
	}
}

// TestIsSubjectOf: the worker's check of a message's subject against its
// event agrees with Event.Subject, for the subject itself and for every
// near miss.
func TestIsSubjectOf(t *testing.T) {
	ev := &events.Event{Target: events.TargetSkipcall, ContactID: "0b6c7c8e-6f1d-4a53-9d6e-2f4f5e9c1a01"}
	const prefix = "contacts"
	want := ev.Subject(prefix)
	if !isSubjectOf(want, prefix, ev) {
		t.Fatalf("%q is the event's subject", want)
	}
	others := []string{
		"", prefix, want + "x", want[:len(want)-1], "x" + want,
		"contacts.dlq.skipcall." + ev.ContactID,
		"contacts.patch.revyops." + ev.ContactID,
		"contactsx.patch.skipcall." + ev.ContactID,
		"contacts.patch.skipcall" + ev.ContactID,
		"contacts.patch.skipcall..", "contacts.patch.skipcall.",
	}
	for _, s := range others {
		if isSubjectOf(s, prefix, ev) != (s == want) {
			t.Errorf("isSubjectOf(%q) = %v, want %v", s, !(s == want), s == want)
		}
	}
}
