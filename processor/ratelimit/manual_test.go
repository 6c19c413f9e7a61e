package ratelimit

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
)

// TestManualPauseHoldsEveryReplicaUntilResumed: an operator's pause,
// written from a process of its own that knows the target's name and not
// its key, stops every replica (a slot granted before it included), lasts
// past any window and any provider pause, is not replaced by a 429 or a
// credential failure meanwhile, names who paused and when, and ends for
// every replica at the resume. Other targets go on.
func TestManualPauseHoldsEveryReplicaUntilResumed(t *testing.T) {
	emb := natstest.Server(t)
	cfg := testConfig(100, 400*time.Millisecond)
	bs := replicas(t, emb, 3, cfg)
	other := cfg
	other.Name, other.Key = "revyops", "revyops-key"
	rv := replicas(t, emb, 1, other)[0]
	ctx := testContext(t)

	op, err := NewOperator(ctx, natstest.Connect(t, emb, "operator"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Pause(ctx, "nosuch", "ops", ""); !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("Pause of an unknown target = %v, want ErrUnknownTarget", err)
	}
	held, err := bs[2].TryTake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	n, err := op.Pause(ctx, "skipcall", "alice@ops", "provider maintenance")
	if err != nil || n != 1 {
		t.Fatalf("Pause = %d, %v; want the target's one budget", n, err)
	}
	for i, b := range bs {
		eventually(t, ctx, fmt.Sprintf("replica %d paused", i), func() bool { return b.State().Kind == kindManual })
	}
	if err := held.Valid(); !errors.Is(err, ErrPaused) {
		t.Fatalf("slot granted before the pause: Valid = %v, want ErrPaused", err)
	}
	// A 429 and a credential failure seen meanwhile (by requests in flight)
	// do not replace it, and it outlasts several windows.
	if err := bs[0].Pause(ctx, time.Now().Add(50*time.Millisecond), "429"); err != nil {
		t.Fatal(err)
	}
	if err := bs[1].CredentialsFailed(ctx, held, "401"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * cfg.Window) // the time a pause of its own would have ended
	for i, b := range bs {
		if _, err := b.TryTake(ctx); !errors.Is(err, ErrPaused) {
			t.Fatalf("replica %d: TryTake during a manual pause = %v", i, err)
		}
		until, _ := b.Blocked()
		if until.IsZero() || time.Until(until) > manualRecheck {
			t.Fatalf("replica %d: Blocked until %s: a waiter would not look again within %s", i, until, manualRecheck)
		}
	}
	if _, err := rv.TryTake(ctx); err != nil {
		t.Fatalf("the other target is held by the pause: %v", err)
	}
	states, err := op.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 || states[0].Target != "revyops" || states[0].Paused || states[1].Target != "skipcall" {
		t.Fatalf("States = %+v", states)
	}
	s := states[1]
	if !s.Paused || s.Kind != kindManual || s.By != "alice@ops" || s.Reason != "provider maintenance" ||
		s.Since.Before(before.Truncate(time.Millisecond)) || !s.Until.IsZero() || s.Budget != bs[0].id[:8] {
		t.Fatalf("state of the paused target: %+v", s)
	}
	if got := bs[0].State(); got.By != "alice@ops" || got.Kind != kindManual {
		t.Fatalf("a replica's own State: %+v", got)
	}
	// A second pause keeps the first one's author.
	if n, err := op.Pause(ctx, "skipcall", "bob", "again"); err != nil || n != 0 {
		t.Fatalf("second Pause = %d, %v", n, err)
	}
	if n, err := op.Resume(ctx, "skipcall"); err != nil || n != 1 {
		t.Fatalf("Resume = %d, %v", n, err)
	}
	for i, b := range bs {
		eventually(t, ctx, fmt.Sprintf("replica %d resumed", i), func() bool { return !b.State().Paused })
	}
	if _, err := bs[0].Take(ctx); err != nil {
		t.Fatal(err)
	}
	// Resume leaves a provider's pause alone.
	if err := bs[0].Pause(ctx, time.Now().Add(time.Minute), "429"); err != nil {
		t.Fatal(err)
	}
	if n, err := op.Resume(ctx, "skipcall"); err != nil || n != 0 {
		t.Fatalf("Resume of a rate-limit pause = %d, %v; want it left alone", n, err)
	}
	if s := bs[0].State(); s.Kind != kindRate {
		t.Fatalf("after Resume: %+v", s)
	}
}
