package ratelimit

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
)

// TestTransport: the transport observes every response (the window aligns
// without an explicit Observe) and refuses, without sending, a request
// whose slot was granted before another replica paused the target.
func TestTransport(t *testing.T) {
	emb := natstest.Server(t)
	sb, base := skipcall(t, 5, 2*time.Second)
	cfg := testConfig(5, 2*time.Second)
	bs := replicas(t, emb, 2, cfg)
	ctx := testContext(t)
	hc := &http.Client{Transport: bs[0].Transport(nil)}

	g, err := bs[0].TryTake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status, o, err := patch(WithGrant(ctx, g), hc, base, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("PATCH: %d %v", status, err)
	}
	if want := o.Reset.Add(cfg.ResetMargin); !bs[0].State().WindowEnd.Equal(want) {
		t.Fatalf("window end %s, want the provider's reset plus the margin %s", bs[0].State().WindowEnd, want)
	}

	held, err := bs[0].TryTake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bs[1].Pause(ctx, time.Now().Add(time.Second), "429"); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the pause seen by replica 0", func() bool { u, _ := bs[0].Blocked(); return !u.IsZero() })
	before := len(sb.Requests())
	_, _, err = patch(WithGrant(ctx, held), hc, base, nil)
	if !errors.Is(err, ErrPaused) {
		t.Fatalf("request with a slot from before the pause: err = %v, want ErrPaused", err)
	}
	if n := len(sb.Requests()); n != before {
		t.Fatalf("the provider received %d requests after the pause", n-before)
	}
}

// TestObserveCountsOtherClients: requests the provider counted but the
// budget did not (another client of the same key) are added to the shared
// count from X-RateLimit-Remaining, so the budget stops at the provider's
// limit instead of running into 429s.
func TestObserveCountsOtherClients(t *testing.T) {
	const limit = 10
	emb := natstest.Server(t)
	_, base := skipcall(t, limit, 4*time.Second)
	b := replicas(t, emb, 1, testConfig(limit, 4*time.Second))[0]
	ctx := testContext(t)
	hc := &http.Client{Transport: b.Transport(nil)}
	send := func() int {
		g, err := b.TryTake(ctx)
		if err != nil {
			return 0
		}
		status, _, err := patch(WithGrant(ctx, g), hc, base, nil)
		if err != nil {
			t.Fatal(err)
		}
		return status
	}
	if s := send(); s != http.StatusOK {
		t.Fatalf("first request: %d", s)
	}
	for range 6 { // another client, outside the budget
		if s, _, err := patch(ctx, http.DefaultClient, base, nil); err != nil || s != http.StatusOK {
			t.Fatalf("other client: %d %v", s, err)
		}
	}
	sent := 0
	for {
		s := send()
		if s == 0 {
			break
		}
		if s != http.StatusOK {
			t.Fatalf("request %d answered %d: the budget ran past the provider's limit", sent+2, s)
		}
		sent++
	}
	// 1 + 6 used: the second request sees 8 used, the third 9, the fourth 10.
	if sent != limit-7 {
		t.Fatalf("granted %d more after the other client's 6, want %d", sent, limit-7)
	}
	if _, err := b.TryTake(ctx); !errors.Is(err, ErrExhausted) && !errors.Is(err, ErrPaused) {
		t.Fatalf("after the provider's limit: TryTake = %v", err)
	}
}
