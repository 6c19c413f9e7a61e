package perf

import (
	"context"
	"testing"
	"time"
)

// TestSourcePhaseSmoke runs the HubSpot source phase alone at a tiny size:
// every request must be a 202 (sourcePhase fails on more than 1% errors).
func TestSourcePhaseSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("load harness skipped with -short")
	}
	cfg := Config{Duration: 300 * time.Millisecond, Conns: 4, Dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := sourcePhase(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.rate <= 0 || len(r.lat) == 0 || r.allocs <= 0 {
		t.Fatalf("no figures: %+v", r)
	}
}
