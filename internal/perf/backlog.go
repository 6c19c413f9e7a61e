package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/proc"
	"github.com/patchbay/patchbay/sandbox"
	"github.com/patchbay/patchbay/stream"
)

// BacklogConfig sizes the "rate-limited backlog" rows: a backlog queued
// while no worker runs, drained by worker processes through a Skipcall
// sandbox that enforces Limit requests per Window (X-RateLimit-* headers
// and 429).
type BacklogConfig struct {
	Root, Dir string
	Contacts  int           // contacts with changes
	Events    int           // events over them (each contact gets Events/Contacts, several fields each)
	Limit     int           // requests per window at the provider
	Window    time.Duration // the provider's window
	Workers   []int         // worker processes of each row
	Shuffled  bool          // events posted in random order rather than contact by contact
	Timeout   time.Duration // longest one drain may take
}

// BacklogRow is one drain of the backlog.
type BacklogRow struct {
	Workers, Contacts, Events int
	Order                     string
	Requests, Limited         int // PATCHes the sandbox answered, and how many with 429
	MaxWindow                 int // most requests in one provider window
	Drain, Ideal              time.Duration
	Partial                   bool  // not drained within the timeout
	PeakRSS                   int64 // the largest worker's peak RSS (VmHWM), bytes
}

// PerContact is requests per contact with changes.
func (r BacklogRow) PerContact() float64 { return float64(r.Requests) / float64(r.Contacts) }

// RunBacklog builds patchbay and nats-server and runs one drain per entry
// of cfg.Workers, each from an empty server.
func RunBacklog(ctx context.Context, cfg BacklogConfig, log io.Writer) ([]BacklogRow, error) {
	fmt.Fprintln(log, "building patchbay and nats-server for the rate-limited backlog rows")
	bin, err := proc.Build(ctx, cfg.Root, cfg.Dir)
	if err != nil {
		return nil, err
	}
	natsBin, err := proc.BuildNATSServer(ctx, cfg.Root, cfg.Dir)
	if err != nil {
		return nil, err
	}
	var rows []BacklogRow
	for _, n := range cfg.Workers {
		row, err := backlogRun(ctx, cfg, bin, natsBin, n, log)
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// backlogRun drains one backlog with workers processes.
func backlogRun(ctx context.Context, cfg BacklogConfig, bin, natsBin string, workers int, log io.Writer) (BacklogRow, error) {
	row := BacklogRow{Workers: workers, Contacts: cfg.Contacts, Events: cfg.Events, Order: "in order",
		Ideal: time.Duration(float64(cfg.Contacts) / float64(cfg.Limit) * float64(cfg.Window))}
	if cfg.Shuffled {
		row.Order = "shuffled"
	}
	store, err := os.MkdirTemp(cfg.Dir, "js")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(store)
	srv, err := proc.StartNATSServer(ctx, natsBin, store)
	if err != nil {
		return row, err
	}
	defer srv.Kill()
	nc, err := stream.Connect(ctx, srv.URL, "", "bench-backlog")
	if err != nil {
		return row, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return row, err
	}
	scfg := benchStream(srv.URL)
	if err := stream.Ensure(ctx, js, scfg); err != nil {
		return row, err
	}
	sk, err := sandbox.NewSkipcall(sandbox.SkipcallConfig{APIKeys: []string{skKey}, AutoCreate: true, RatePerMinute: cfg.Limit, RateWindow: cfg.Window})
	if err != nil {
		return row, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return row, err
	}
	hs := &http.Server{Handler: sk, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	if err := queueBacklog(ctx, js, cfg); err != nil {
		return row, err
	}
	fmt.Fprintf(log, "  rate-limited backlog, %d worker(s): %d events to %d contacts queued (%s), limit %d per %s\n",
		workers, cfg.Events, cfg.Contacts, row.Order, cfg.Limit, cfg.Window)
	env := map[string]string{
		"PATCHBAY_NATS_URL": srv.URL, "PATCHBAY_WORKER_ADMIN_ADDR": "",
		"PATCHBAY_REVYOPS_BASE_URL": "http://" + ln.Addr().String(), "PATCHBAY_REVYOPS_API_KEY": "unused",
		"PATCHBAY_SKIPCALL_BASE_URL": "http://" + ln.Addr().String(), "PATCHBAY_SKIPCALL_API_KEY": skKey,
		"PATCHBAY_SKIPCALL_RATE_PER_MINUTE": strconv.Itoa(cfg.Limit), "PATCHBAY_SKIPCALL_RATE_WINDOW": cfg.Window.String(),
		"PATCHBAY_LOG_LEVEL": "warn",
	}
	start := time.Now()
	var procs []*proc.Process
	for i := range workers {
		p, err := proc.Start(bin, fmt.Sprintf("patchbay worker %d", i+1), []string{"worker"}, env)
		if err != nil {
			return row, err
		}
		defer p.Kill()
		procs = append(procs, p)
	}
	deadline := time.Now().Add(cfg.Timeout)
	for {
		s, err := js.Stream(ctx, scfg.EventsStream)
		if err == nil && s.CachedInfo().State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			row.Partial = true
			break
		}
		select {
		case <-ctx.Done():
			return row, ctx.Err()
		case <-time.After(100 * time.Millisecond): // polling interval
		}
	}
	row.Drain = time.Since(start)
	for _, p := range procs {
		if _, peak, err := p.RSS(); err == nil {
			row.PeakRSS = max(row.PeakRSS, peak)
		}
	}
	for status, n := range sk.StatusCounts() {
		row.Requests += n
		if status == http.StatusTooManyRequests {
			row.Limited += n
		}
	}
	var windows strings.Builder
	for _, w := range sk.Windows() {
		row.MaxWindow = max(row.MaxWindow, w.Requests+w.Limited)
		fmt.Fprintf(&windows, " %s:%d", w.Start.Sub(start).Round(100*time.Millisecond), w.Requests+w.Limited)
	}
	// Where a drain loses time: each provider window's start (from the
	// workers' start) and its requests.
	fmt.Fprintf(log, "  windows (start:requests):%s\n", windows.String())
	fmt.Fprintf(log, "  rate-limited backlog, %d worker(s): %d requests (%.2f per contact), drained in %s, ideal %s\n",
		workers, row.Requests, row.PerContact(), row.Drain.Round(100*time.Millisecond), row.Ideal)
	return row, nil
}

// backlogFields are the Skipcall fields the backlog's events set, a few
// each.
var backlogFields = []string{"firstName", "lastName", "company", "city", "country", "role"}

// queueBacklog publishes cfg.Events events over cfg.Contacts contacts to
// the events stream, contact by contact or shuffled, each with a later
// occurred_at than the one before.
func queueBacklog(ctx context.Context, js jetstream.JetStream, cfg BacklogConfig) error {
	rng := rand.New(rand.NewPCG(19, 1))
	order := make([]int, cfg.Events)
	for i := range order {
		order[i] = i
	}
	if cfg.Shuffled {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	per := max(cfg.Events/max(cfg.Contacts, 1), 1)
	base := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	for _, i := range order {
		contact := fmt.Sprintf("b1b1b1b1-0000-4000-8000-%012d", (i/per)%cfg.Contacts)
		patch := map[string]string{}
		for k := range 3 {
			f := backlogFields[(i+k)%len(backlogFields)]
			patch[f] = fmt.Sprintf("v%d", i)
		}
		id := fmt.Sprintf("backlog-%d", i)
		ev := map[string]any{"id": id, "target": "skipcall", "contact_id": contact,
			"occurred_at": base.Add(time.Duration(i) * time.Second).Format(time.RFC3339), "patch": patch}
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if err := publishAsync(ctx, js, "contacts.patch.skipcall."+contact, data, id); err != nil {
			return err
		}
	}
	return waitPublished(ctx, js)
}

// BacklogMarkdown formats the rate-limited backlog rows.
func BacklogMarkdown(rows []BacklogRow) string {
	var b strings.Builder
	b.WriteString("### rate-limited backlog\n\n")
	b.WriteString("| workers | events | contacts | order | requests | requests per contact | 429 | most in a window | drain | ideal (contacts ÷ limit) | drain ÷ ideal | worker peak RSS |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		drain := r.Drain.Round(100 * time.Millisecond).String()
		if r.Partial {
			drain += " (not drained)"
		}
		fmt.Fprintf(&b, "| %d | %d | %d | %s | %d | %.2f | %d | %d | %s | %s | %.2f | %s |\n", r.Workers, r.Events, r.Contacts, r.Order,
			r.Requests, r.PerContact(), r.Limited, r.MaxWindow, drain, r.Ideal, float64(r.Drain)/float64(r.Ideal), mib(r.PeakRSS))
	}
	return b.String()
}

// errNoBacklogRows is returned when no worker count is given.
var errNoBacklogRows = errors.New("perf: no worker counts for the rate-limited backlog")

// CheckBacklog validates cfg.
func (cfg BacklogConfig) CheckBacklog() error {
	if len(cfg.Workers) == 0 {
		return errNoBacklogRows
	}
	if cfg.Contacts < 1 || cfg.Events < cfg.Contacts || cfg.Limit < 1 || cfg.Window <= 0 {
		return fmt.Errorf("perf: rate-limited backlog needs contacts ≥ 1, events ≥ contacts, a limit and a window")
	}
	return nil
}
