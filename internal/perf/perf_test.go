package perf

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestHarnessSmoke runs every phase at a tiny size: the harness must keep
// working, and each phase must produce a figure and, where it has one, a floor.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("load harness skipped with -short")
	}
	cfg := Config{Duration: 300 * time.Millisecond, Conns: 4, Events: 200, Concurrency: 8, Latency: 20 * time.Millisecond, Rate: 50, Dir: t.TempDir()}
	ctx, _ := testContext(t)
	rows, err := Run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 15 {
		t.Fatalf("%d rows, want 15", len(rows))
	}
	for _, r := range rows {
		if r.Value <= 0 {
			t.Errorf("%s %s: no figure", r.Phase, r.Metric)
		}
	}
	md := Markdown(rows)
	if !strings.Contains(md, "| ingest HubSpot source (1 item, v3 signature, contact lookup) | events/s (floor: ingest single) |") {
		t.Fatalf("table lacks the HubSpot source row:\n%s", md)
	}
	if !strings.Contains(md, "| worker | events/s |") {
		t.Fatalf("table lacks the worker row:\n%s", md)
	}
}
