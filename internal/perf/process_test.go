package perf

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/proc"
	"github.com/patchbay/patchbay/processor"
)

// testContext ends a little before the test's own deadline, so a slow,
// busy machine gets all the time the test command allows, and no fixed
// timeout shorter than it.
func testContext(t *testing.T) (context.Context, time.Duration) {
	ctx := t.Context()
	left := 30 * time.Minute
	if d, ok := t.Deadline(); ok {
		left = time.Until(d) - 10*time.Second
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		t.Cleanup(cancel)
	}
	return ctx, left
}

// TestProcessSmoke runs the process mode at a tiny size, without the
// Watermill peer (its module is not part of patchbay's): every row gets a
// figure from processes that really ran, every floor too, and no process
// outlives the run.
func TestProcessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("process-mode bench skipped with -short")
	}
	root, err := proc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, left := testContext(t)
	cfg := ProcessConfig{Root: root, Dir: t.TempDir(), Runs: 1, Single: 200, Batch: 1000, Conns: 8, Events: 500,
		Sweep: []int{8}, SweepRuns: 1, Timeout: left}
	rep, err := RunProcesses(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"ingest, single events", "ingest, batches of 100", "worker, default concurrency", "worker, durable state floor", "worker, concurrency 8"}
	if len(rep.Rows) != len(names) {
		t.Fatalf("%d rows, want %d: %+v", len(rep.Rows), len(names), rep.Rows)
	}
	for i, r := range rep.Rows {
		if r.Name != names[i] {
			t.Errorf("row %d is %q, want %q", i, r.Name, names[i])
		}
		if len(r.Samples) != 1 || len(r.Floors) != 1 {
			t.Fatalf("%s: %d samples and %d floors, want 1 and 1", r.Name, len(r.Samples), len(r.Floors))
		}
		for _, s := range append(r.Samples, r.Floors...) {
			if s.Rate <= 0 || s.Partial {
				t.Errorf("%s: sample %+v: no figure, or the queue was not drained", r.Name, s)
			}
			if s.RSS <= 0 {
				t.Errorf("%s: sample %+v: no peak RSS read from the process", r.Name, s)
			}
		}
		if got := r.Ratios(); len(got) != 1 || got[0] <= 0 {
			t.Errorf("%s: ratios %v", r.Name, got)
		}
	}
	for _, h := range []string{"nats-server", "target", "load", "ceiling"} {
		if rep.HelperRSS[h] <= 0 {
			t.Errorf("no peak RSS for %s: %v", h, rep.HelperRSS)
		}
	}
	if kids := children(t); len(kids) > 0 {
		t.Fatalf("processes still running after the bench: %v", kids)
	}
	md := ProcessMarkdown(rep)
	for _, want := range []string{"| worker, default concurrency | patchbay worker | 1 |", "| nats-server |"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

// children lists the pids of this process's live child processes.
func children(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		pids = append(pids, strings.Fields(string(b))...)
	}
	return pids
}

func TestLongestGap(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want time.Duration
	}{
		{"none", nil, 0},
		{"first answer counts from the start", []time.Duration{40 * ms, 50 * ms}, 40 * ms},
		{"gap in the middle", []time.Duration{1 * ms, 2 * ms, 900 * ms, 901 * ms}, 898 * ms},
		{"even", []time.Duration{10 * ms, 20 * ms, 30 * ms}, 10 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := longestGap(tc.in); got != tc.want {
				t.Fatalf("longestGap(%v) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestRatios(t *testing.T) {
	paired := ProcessRow{Samples: []Sample{{Rate: 90}, {Rate: 50}}, Floors: []Sample{{Rate: 100}, {Rate: 25}}}
	if got := paired.Ratios(); len(got) != 2 || got[0] != 0.9 || got[1] != 2 {
		t.Fatalf("run-by-run ratios %v, want [0.9 2]", got)
	}
	shared := ProcessRow{SharedFloor: true, Samples: []Sample{{Rate: 50}}, Floors: []Sample{{Rate: 100}, {Rate: 25}, {Rate: 200}}}
	if got := shared.Ratios(); len(got) != 1 || got[0] != 0.5 {
		t.Fatalf("shared-floor ratios %v, want [0.5] (against the floor's median, 100)", got)
	}
}

func TestSpread(t *testing.T) {
	if got := spread([]float64{3, 1, 2}, "%.0f"); got != "2 (1–3)" {
		t.Fatalf("spread = %q", got)
	}
	if got := spread([]float64{4, 1, 3, 2}, "%.1f"); got != "2.5 (1.0–4.0)" {
		t.Fatalf("spread of an even count = %q", got)
	}
	if got := spread([]float64{7}, "%.0f"); got != "7" {
		t.Fatalf("spread of one = %q", got)
	}
}

func TestParseResult(t *testing.T) {
	var sb strings.Builder
	want := LoadResult{Events: 10, Requests: 10, Elapsed: time.Second, P99: 3 * time.Millisecond, Retried: 2}
	if err := printResult(&sb, want); err != nil {
		t.Fatal(err)
	}
	var got LoadResult
	if err := parseResult("some log line\n"+sb.String(), &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if err := parseResult("no result here", &got); err == nil {
		t.Fatal("parseResult accepted output without a result line")
	}
}

// TestFloorsRunAtTheWorkersDefaultConcurrency: the bare consumer and the
// peer get as many PATCHes in flight as the worker's default.
func TestFloorsRunAtTheWorkersDefaultConcurrency(t *testing.T) {
	f, ok := reflect.TypeFor[processor.Config]().FieldByName("Concurrency")
	if !ok {
		t.Fatal("processor.Config has no Concurrency")
	}
	if got := f.Tag.Get("default"); got != strconv.Itoa(defaultConcurrency) {
		t.Fatalf("the worker's default concurrency is %s, the bench's floors run at %d", got, defaultConcurrency)
	}
}

func TestCPUPerEvent(t *testing.T) {
	for _, tc := range []struct {
		s    []Sample
		want string
	}{
		{nil, "—"},
		{[]Sample{{Events: 100000, CPU: 480 * time.Millisecond, ServerCPU: 1100 * time.Millisecond}}, "4.8 / 11.0"},
		{[]Sample{{Events: 1000, CPU: 137 * time.Millisecond, ServerCPU: 58 * time.Millisecond}}, "137 / 58.0"},
		{[]Sample{{Events: 1000, ServerCPU: 19 * time.Millisecond}}, "— / 19.0"},
		{[]Sample{{Events: 0, CPU: time.Second, ServerCPU: time.Second}}, "—"},
	} {
		if got := cpuPerEvent(tc.s); got != tc.want {
			t.Errorf("cpuPerEvent(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestParsePeerSettings(t *testing.T) {
	got, err := ParsePeerSettings(" 64, 256", "async,sync")
	if err != nil {
		t.Fatal(err)
	}
	want := []PeerSetting{{64, "async"}, {256, "async"}, {64, "sync"}, {256, "sync"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParsePeerSettings = %v, want every pair: %v", got, want)
	}
	if got[3].String() != "256 subscribers, sync acks" {
		t.Fatalf("String() = %q", got[3].String())
	}
	for _, bad := range [][2]string{
		{"", "async"}, {"64", ""}, {"0", "async"}, {"x", "async"}, {"64,64", "async"},
		{"64", "fast"}, {"64", "sync,sync"},
	} {
		if s, err := ParsePeerSettings(bad[0], bad[1]); err == nil {
			t.Errorf("ParsePeerSettings(%q, %q) = %v, want an error", bad[0], bad[1], s)
		}
	}
}

// TestBestPeerRow: the best row is the highest median ratio, not the
// highest single run or rate, and the table marks it and names it.
func TestBestPeerRow(t *testing.T) {
	floors := []Sample{{Rate: 100}, {Rate: 200}, {Rate: 100}}
	row := func(process string, rates ...float64) ProcessRow {
		r := ProcessRow{Name: "worker", Process: process, Floor: "same floor", Floors: floors}
		for _, x := range rates {
			r.Samples = append(r.Samples, Sample{Rate: x})
		}
		return r
	}
	rows := []ProcessRow{
		row("peer A", 50, 400, 50),           // ratios 0.5, 2.0, 0.5: median 0.5, best single run
		row("peer B", 80, 160, 80),           // 0.8, 0.8, 0.8: the best median
		row("peer C", 70, 180, 75),           // 0.7, 0.9, 0.75: median 0.75
		{Name: "worker", Process: "no runs"}, // no ratio: never best
	}
	if got := BestRow(rows); got != 1 {
		t.Fatalf("BestRow = %d, want 1 (peer B, median ratio 0.8)", got)
	}
	if got := BestRow([]ProcessRow{{Process: "no runs"}}); got != -1 {
		t.Fatalf("BestRow of rows without ratios = %d, want -1", got)
	}
	rows[1].Best = true
	md := ProcessMarkdown(ProcessReport{Rows: rows})
	for _, want := range []string{"| worker | peer B (best) | 3 |", "Best of the sweep: peer B, median ratio to the floor 0.80."} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "peer A (best)") || strings.Contains(md, "peer C (best)") {
		t.Errorf("more than one row marked best:\n%s", md)
	}
}
