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
