package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
)

// TestUnlimitedCountsNothingUntilALimitIsNamed: a budget without a plan
// limit grants slots without a counter round trip, still refuses during a
// pause, and starts counting once a response names a limit.
func TestUnlimitedCountsNothingUntilALimitIsNamed(t *testing.T) {
	emb := natstest.Server(t)
	b := replicas(t, emb, 1, testConfig(Unlimited, 2*time.Second))[0]
	ctx := testContext(t)
	js := natstest.Connect(t, emb, "inspect")
	counted := func() uint64 {
		t.Helper()
		s, err := js.Stream(ctx, DefaultCounterStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	for range 50 {
		g, err := b.TryTake(ctx)
		if err != nil {
			t.Fatalf("TryTake without a limit: %v", err)
		}
		if err := g.Valid(); err != nil {
			t.Fatalf("grant not valid: %v", err)
		}
	}
	if n := counted(); n != 0 {
		t.Fatalf("50 unlimited slots wrote %d counter increments, want 0", n)
	}

	// A pause still holds, and a grant taken before it is refused at the wire.
	g, err := b.TryTake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Pause(ctx, time.Now().Add(time.Hour), "429"); err != nil {
		t.Fatal(err)
	}
	if err := g.Valid(); !errors.Is(err, ErrPaused) {
		t.Fatalf("grant from before the pause: Valid = %v, want ErrPaused", err)
	}
	if _, err := b.TryTake(ctx); !errors.Is(err, ErrPaused) {
		t.Fatalf("TryTake during the pause = %v, want ErrPaused", err)
	}
}

// TestUnlimitedFollowsTheProvidersLimit: once a response names a limit,
// slots are counted and the window closes at that limit.
func TestUnlimitedFollowsTheProvidersLimit(t *testing.T) {
	emb := natstest.Server(t)
	b := replicas(t, emb, 1, testConfig(Unlimited, time.Minute))[0]
	ctx := testContext(t)
	if _, err := b.TryTake(ctx); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "3")
	h.Set("X-RateLimit-Remaining", "2")
	h.Set("X-RateLimit-Reset", "50")
	o, ok := ParseHeaders(h)
	if !ok {
		t.Fatal("headers not read")
	}
	if err := b.Observe(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	granted := 0
	for range 10 {
		_, err := b.TryTake(ctx)
		if errors.Is(err, ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		granted++
	}
	// The provider counted one request; two are left in its window.
	if granted != 2 {
		t.Fatalf("after the provider named a limit of 3 with 2 remaining, %d slots were granted, want 2", granted)
	}
	js := natstest.Connect(t, emb, "inspect")
	s, err := js.Stream(ctx, DefaultCounterStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLastMsgForSubject(ctx, DefaultCounterSubject+".>"); errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatal("no counter was written after the provider named a limit")
	}
}
