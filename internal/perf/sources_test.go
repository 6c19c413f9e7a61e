package perf

import (
	"context"
	"os"
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

// TestSourceRows prints the bench's HubSpot source rows against the native
// endpoint, measured in the same run, without the other phases:
//
//	PATCHBAY_BENCH_SOURCES=1 go test -count=1 -run TestSourceRows -v ./internal/perf/
func TestSourceRows(t *testing.T) {
	if os.Getenv("PATCHBAY_BENCH_SOURCES") == "" {
		t.Skip("set PATCHBAY_BENCH_SOURCES=1 to measure")
	}
	cfg := Config{Duration: 5 * time.Second, Conns: 64, Dir: t.TempDir()}
	ctx := context.Background()
	ing, err := ingestPhase(ctx, cfg, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	rows := []Row{{"ingest single", "events/s", ing.rate, 0, "events/s"}}
	if err := addSourceRows(ctx, cfg, ing, &rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", Markdown(rows))
}
