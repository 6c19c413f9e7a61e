package ratelimit

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
)

// TestClockBehindWindowStartWaitsForTheSkew: a replica whose clock is a
// little behind the one that started the shared window waits until the
// window's start on its own clock (the skew), not until the window's end
// (a whole window, a minute for Skipcall), and its slot is counted in that
// window.
func TestClockBehindWindowStartWaitsForTheSkew(t *testing.T) {
	const skew = 300 * time.Millisecond
	emb := natstest.Server(t)
	ctx := testContext(t)
	cfg := testConfig(10, time.Minute) // ResetMargin 7.5s: the skew is well inside it
	ahead, err := New(ctx, natstest.Connect(t, emb, "ahead"), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ahead.Close)
	// behind's clock is set once the window exists: skew before its start,
	// then running at the real pace.
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	behind, err := newBudget(ctx, natstest.Connect(t, emb, "behind"), cfg, testLogger(t), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(behind.Close)

	if _, err := ahead.TryTake(ctx); err != nil {
		t.Fatal(err)
	}
	ahead.mu.Lock()
	w := ahead.state.window
	ahead.mu.Unlock()
	eventually(t, ctx, "the replica behind sees the window", func() bool {
		behind.mu.Lock()
		defer behind.mu.Unlock()
		return behind.state.window.ID == w.ID
	})
	offset.Store(int64(time.Until(time.UnixMilli(w.Start).Add(-skew))))

	now := behind.now()
	_, err = behind.TryTake(ctx)
	var we *WaitError
	if !errors.As(err, &we) || !errors.Is(err, ErrExhausted) {
		t.Fatalf("TryTake before the window's start on this clock: %v, want a *WaitError", err)
	}
	if wait := we.Until.Sub(now); wait > skew || !we.Until.Equal(time.UnixMilli(w.Start)) {
		t.Fatalf("told to wait %v (until %v), want the skew %v (until the window's start %v); the window ends at %v",
			wait, we.Until, skew, time.UnixMilli(w.Start), time.UnixMilli(w.End))
	}
	if _, err := behind.Take(ctx); err != nil {
		t.Fatal(err)
	}
	if got := behind.now(); got.Before(time.UnixMilli(w.Start)) || !got.Before(time.UnixMilli(w.Close)) {
		t.Fatalf("granted at %v on its clock, outside the window [%v, %v)", got, time.UnixMilli(w.Start), time.UnixMilli(w.Close))
	}
	if n, err := behind.st.count(ctx, w.ID); err != nil || n != 2 {
		t.Fatalf("the window's counter is %d (%v), want both slots in it", n, err)
	}
}
