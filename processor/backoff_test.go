package processor

import (
	"testing"
	"time"
)

func TestBackoffGrowsWithinBounds(t *testing.T) {
	w := &Worker{cfg: Config{BackoffInitial: time.Second, BackoffMax: 30 * time.Second}}
	for attempt := 1; attempt <= 12; attempt++ {
		base := time.Second << (attempt - 1)
		if base > 30*time.Second {
			base = 30 * time.Second
		}
		lo, hi := time.Duration(float64(base)*0.7), time.Duration(float64(base)*1.3)+time.Millisecond
		for range 50 {
			if d := w.backoff(attempt); d < lo || d > hi {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, lo, hi)
			}
		}
	}
}

func TestGatePauseAndRate(t *testing.T) {
	g := NewGate(60) // one a second
	now := time.Now()
	if d, _ := g.Reserve(now); d != 0 {
		t.Fatalf("first request waits %s", d)
	}
	if d, _ := g.Reserve(now); d < 900*time.Millisecond || d > 1100*time.Millisecond {
		t.Fatalf("second request within the second waits %s, want ~1s", d)
	}
	if !g.PauseUntil(now.Add(time.Minute), "429") {
		t.Fatal("first pause must report that it started")
	}
	if g.PauseUntil(now.Add(30*time.Second), "429") {
		t.Fatal("an overlapping pause must not report a new start")
	}
	if d, why := g.Paused(now); d < 59*time.Second || why != "429" {
		t.Fatalf("paused %s (%q): an earlier end must not shorten a pause", d, why)
	}
	if d, _ := g.Reserve(now); d < time.Minute {
		t.Fatalf("reserve during a pause waits %s, want ≥ 1m", d)
	}
}

func TestTargetOf(t *testing.T) {
	for subj, want := range map[string]string{
		"contacts.patch.skipcall.x": "skipcall", "contacts.patch.revyops.1": "revyops",
		"contacts.patch.hubspot.1": "unknown", "foo.bar": "unknown",
	} {
		if got := targetOf("contacts", subj); got != want {
			t.Errorf("targetOf(%q) = %q, want %q", subj, got, want)
		}
	}
}

func BenchmarkBackoff(b *testing.B) {
	w := &Worker{cfg: Config{BackoffInitial: time.Second, BackoffMax: 10 * time.Minute}}
	b.ReportAllocs()
	for b.Loop() {
		_ = w.backoff(8)
	}
}
