// Package perf is patchbay's load harness ('patchbay bench'): it measures
// ingest and the worker on loopback and, in the same run, a floor for each —
// the least code that does the same work with the same JetStream and HTTP —
// and reports ratios, because absolute figures drift on shared machines.
package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/processor/revyops"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/redact"
	"github.com/patchbay/patchbay/sandbox"
	"github.com/patchbay/patchbay/stream"
	"github.com/patchbay/patchbay/stream/embedded"
)

// Config sizes a run. Every phase is bounded in time or count.
type Config struct {
	Duration    time.Duration // closed-loop ingest phases
	Conns       int           // HTTP connections of the ingest load
	Events      int           // events pre-filled for each worker phase
	Concurrency int           // worker and floor consumer concurrency
	Latency     time.Duration // provider latency of the slow-provider phase
	Rate        int           // offered events/s of the end-to-end phase
	Dir         string        // scratch directory for JetStream stores
}

// Row is one line of the result table.
type Row struct {
	Phase, Metric string
	Value, Floor  float64
	Unit          string
}

const token = "bench-token-0123456789abcdef"
const skKey = "sk_test_bench"

// Run executes every phase and returns the table rows.
func Run(ctx context.Context, cfg Config, log io.Writer) ([]Row, error) {
	var rows []Row
	say := func(format string, a ...any) { fmt.Fprintf(log, format+"\n", a...) }

	say("ingest: single events, %d connections, %s", cfg.Conns, cfg.Duration)
	ing, err := ingestPhase(ctx, cfg, false, 1)
	if err != nil {
		return nil, err
	}
	floor, err := ingestPhase(ctx, cfg, true, 1)
	if err != nil {
		return nil, err
	}
	rows = append(rows,
		Row{"ingest single", "events/s", ing.rate, floor.rate, "events/s"},
		Row{"ingest single", "p50", ms(ing.p(0.5)), ms(floor.p(0.5)), "ms"},
		Row{"ingest single", "p99", ms(ing.p(0.99)), ms(floor.p(0.99)), "ms"},
		Row{"ingest single", "p99.9", ms(ing.p(0.999)), ms(floor.p(0.999)), "ms"},
		Row{"ingest single", "allocs/request", ing.allocs, floor.allocs, "allocs"},
	)
	say("ingest: mapped HubSpot source, one signed item per request, contact lookup")
	if err := addSourceRows(ctx, cfg, ing, &rows); err != nil {
		return nil, err
	}
	say("ingest: batches of 100")
	batch, err := ingestPhase(ctx, cfg, false, 100)
	if err != nil {
		return nil, err
	}
	ceiling, err := publishCeiling(ctx, cfg, max(cfg.Events, 20000))
	if err != nil {
		return nil, err
	}
	rows = append(rows, Row{"ingest batch of 100", "events/s (floor: ingest single)", batch.rate, ing.rate, "events/s"},
		Row{"ingest batch of 100", "events/s (floor: async publish straight to JetStream)", batch.rate, ceiling, "events/s"},
		Row{"ingest batch of 100", "p99 per request", ms(batch.p(0.99)), ms(ing.p(0.99)), "ms"})

	say("worker: %d events, no provider latency, concurrency %d (best of 2, alternating with the floor)", cfg.Events, cfg.Concurrency)
	// Alternate worker and floor twice and keep each one's best run, so
	// neither pays alone for a noisy moment or the previous phase's garbage.
	var wk, wf float64
	for range 2 {
		for _, floor := range []bool{false, true} {
			runtime.GC()
			rate, err := workerPhase(ctx, cfg, floor, 0)
			if err != nil {
				return nil, err
			}
			if floor {
				wf = max(wf, rate)
			} else {
				wk = max(wk, rate)
			}
		}
	}
	rows = append(rows, Row{"worker", "events/s", wk, wf, "events/s"})

	slowN := min(cfg.Events, int(3*float64(cfg.Concurrency)/cfg.Latency.Seconds()))
	say("worker: %d events, provider latency %s, concurrency %d", slowN, cfg.Latency, cfg.Concurrency)
	slowCfg := cfg
	slowCfg.Events = slowN
	ws, err := workerPhase(ctx, slowCfg, false, cfg.Latency)
	if err != nil {
		return nil, err
	}
	ideal := float64(cfg.Concurrency) / cfg.Latency.Seconds()
	rows = append(rows, Row{fmt.Sprintf("worker, provider latency %s", cfg.Latency), "events/s (floor: concurrency/latency)", ws, ideal, "events/s"})

	say("end to end: %d events/s offered for %s", cfg.Rate, cfg.Duration)
	e2e, err := endToEnd(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rows = append(rows,
		Row{"end to end (POST → PATCH applied)", "p50", ms(e2e.p(0.5)), 0, "ms"},
		Row{"end to end (POST → PATCH applied)", "p99", ms(e2e.p(0.99)), 0, "ms"},
	)
	return rows, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Markdown renders rows as a table with a ratio column.
func Markdown(rows []Row) string {
	var b strings.Builder
	b.WriteString("| phase | metric | patchbay | floor | ratio |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio := "—"
		if r.Floor > 0 {
			ratio = fmt.Sprintf("%.2f", r.Value/r.Floor)
		}
		floor := "—"
		if r.Floor > 0 {
			floor = fmt.Sprintf("%.1f %s", r.Floor, r.Unit)
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f %s | %s | %s |\n", r.Phase, r.Metric, r.Value, r.Unit, floor, ratio)
	}
	return b.String()
}

// --- shared parts ---

type natsEnv struct {
	emb  *embedded.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	scfg stream.Config
}

func startNATS(ctx context.Context, dir string) (*natsEnv, error) {
	sd, err := os.MkdirTemp(dir, "js")
	if err != nil {
		return nil, err
	}
	emb, err := embedded.Run(embedded.Config{StoreDir: sd})
	if err != nil {
		return nil, err
	}
	nc, err := stream.Connect(ctx, emb.ClientURL(), "", "bench")
	if err != nil {
		emb.Shutdown()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	scfg := stream.Config{URL: emb.ClientURL(), SubjectPrefix: "contacts", EventsStream: "PATCHBAY_EVENTS", DLQStream: "PATCHBAY_DLQ",
		Replicas: 1, DedupWindow: 25 * time.Hour, Consumer: "patchbay-worker", MaxBytes: -1}
	if err := stream.Ensure(ctx, js, scfg); err != nil {
		return nil, err
	}
	return &natsEnv{emb: emb, nc: nc, js: js, scfg: scfg}, nil
}

func (n *natsEnv) close() {
	n.nc.Close()
	n.emb.Shutdown()
}

// contactID is the Skipcall contact of event i.
func contactID(i int) string { return fmt.Sprintf("b0b0b0b0-0000-4000-8000-%012d", i) }

// eventTail is everything of a bench event after its contact id: a ~1 KiB
// Skipcall patch, encoded once so the load generator spends its CPU on
// requests, not on encoding.
var eventTail = func() []byte {
	b, _ := json.Marshal(map[string]any{
		"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "company": "Analytical Engines Ltd",
		"city": "London", "country": "United Kingdom", "role": "Chief Mathematician", "url": "https://example.com/ada",
		"linkedinUrl": "https://linkedin.com/in/ada", "allowPhoneCalls": true, "phoneNumbers": []string{"+442071234567", "+442079876543"},
		"customFields": map[string]string{"industry": "Computing", "team_size": "50-100", "notes": strings.Repeat("n", 380)},
	})
	return append(append([]byte(`","occurred_at":"2026-11-25T10:00:00Z","patch":`), b...), '}')
}()

// appendEvent appends bench event i of run to buf.
func appendEvent(buf []byte, run string, i int) []byte {
	buf = append(buf, `{"id":"`...)
	buf = append(buf, run...)
	buf = append(buf, '-')
	buf = strconv.AppendInt(buf, int64(i), 10)
	buf = append(buf, `","target":"skipcall","contact_id":"`...)
	buf = append(buf, contactID(i)...)
	return append(buf, eventTail...)
}

// eventJSON is bench event i of run, ~1 KiB.
func eventJSON(run string, i int) []byte { return appendEvent(nil, run, i) }

type latencies []time.Duration

func (l latencies) p(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

type loadResult struct {
	rate   float64 // events per second
	lat    latencies
	allocs float64 // heap allocations per request in this process (server and client)
}

func (r loadResult) p(q float64) time.Duration { return r.lat.p(q) }

// ingestConfig is ingest as it runs by default, with the bench's token.
func ingestConfig() ingest.Config {
	return ingest.Config{MaxBodyBytes: 4 << 20, MaxBatch: 1000, PublishTimeout: 5 * time.Second, MaxInFlight: 4096, Tokens: []redact.Secret{token},
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 1 << 16}
}

// newWorker is the worker with default settings, delivering through sc to
// the sandbox at url, each target with a rate budget of no limit of ours
// (shared through NATS, as in the service). Call closeAll when it has stopped.
func newWorker(ctx context.Context, env *natsEnv, cfg Config, sc *skipcall.Client, url string) (w *processor.Worker, closeAll func(), err error) {
	pcfg := processor.Config{Concurrency: cfg.Concurrency, AckWait: 30 * time.Second, MaxAttempts: 12, MaxRetryAge: time.Hour,
		BackoffInitial: time.Second, BackoffMax: 10 * time.Minute, CredentialsPause: time.Minute, HoldLimit: 5 * time.Second, DrainTimeout: time.Second, Coalesce: 50}
	var budgets []*ratelimit.Budget
	closeAll = func() {
		for _, b := range budgets {
			b.Close()
		}
	}
	targets := map[events.Target]processor.Target{}
	for t, key := range map[events.Target]string{events.TargetSkipcall: skKey, events.TargetRevyOps: "unused"} {
		b, err := ratelimit.New(ctx, env.js, pcfg.BudgetConfig(env.scfg, t, key, 0, 0), slog.New(slog.DiscardHandler))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		budgets = append(budgets, b)
		targets[t] = processor.Target{Budget: b}
	}
	rc, err := revyops.New(revyops.Config{BaseURL: url, APIKey: "unused", AuthHeader: "X-API-Key", AuthFormat: "%s", Timeout: time.Second}, nil, 1)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	targets[events.TargetSkipcall] = processor.Target{Provider: sc, Budget: targets[events.TargetSkipcall].Budget}
	targets[events.TargetRevyOps] = processor.Target{Provider: rc, Budget: targets[events.TargetRevyOps].Budget}
	w, err = processor.New(pcfg, processor.Deps{JS: env.js, Stream: env.scfg, Targets: targets})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return w, closeAll, nil
}

// --- phase 1: ingest vs floor ---

type floorEvent struct {
	ID         string          `json:"id"`
	Target     string          `json:"target"`
	ContactID  string          `json:"contact_id"`
	OccurredAt time.Time       `json:"occurred_at"`
	Patch      json.RawMessage `json:"patch"`
}

// floorHandler is the least an ingest can do: decode, publish, wait for the PubAck.
func floorHandler(js jetstream.JetStream) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev floorEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := js.Publish(r.Context(), "contacts.patch."+ev.Target+"."+ev.ContactID, body, jetstream.WithMsgID(ev.ID)); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

func ingestPhase(ctx context.Context, cfg Config, floor bool, batch int) (loadResult, error) {
	env, err := startNATS(ctx, cfg.Dir)
	if err != nil {
		return loadResult{}, err
	}
	defer env.close()
	var h http.Handler
	if floor {
		h = floorHandler(env.js)
	} else {
		ih, err := ingest.New(ingestConfig(), env.js, env.scfg.EventsStream, env.scfg.SubjectPrefix, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			return loadResult{}, err
		}
		defer func() { _ = ih.Close() }()
		h = ih
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loadResult{}, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/events"

	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	var seq atomic.Int64
	return closedLoop(ctx, cfg, "perf", batch, func() func(context.Context) *http.Request {
		var buf []byte
		return func(ctx context.Context) *http.Request {
			buf = buf[:0]
			first := int(seq.Add(int64(batch))) - batch
			if batch > 1 {
				buf = append(buf, '[')
			}
			for k := range batch {
				if k > 0 {
					buf = append(buf, ',')
				}
				buf = appendEvent(buf, run, first+k)
			}
			if batch > 1 {
				buf = append(buf, ']')
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(buf))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			return req
		}
	})
}

// closedLoop runs cfg.Conns clients for cfg.Duration, each sending its next
// request as soon as the last is answered, and measures the requests
// answered 202; each carries perRequest events. newClient is called once
// per client and returns that client's request builder, which may keep
// buffers and state of its own. More than 1% failed requests fail the
// phase; label names it in that error.
func closedLoop(ctx context.Context, cfg Config, label string, perRequest int, newClient func() func(context.Context) *http.Request) (loadResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Conns, MaxConnsPerHost: cfg.Conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var failed atomic.Int64
	lctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var mu sync.Mutex
	var all latencies
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Conns {
		next := newClient()
		wg.Go(func() {
			var local latencies
			for lctx.Err() == nil {
				req := next(ctx) // not lctx: a request in flight at the deadline is answered
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failed.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if f := failed.Load(); f > int64(len(all))/100 {
		return loadResult{}, fmt.Errorf("%s: %d of %d requests failed", label, f, int64(len(all))+f)
	}
	slices.Sort(all)
	return loadResult{
		rate:   float64(len(all)*perRequest) / elapsed.Seconds(),
		lat:    all,
		allocs: float64(ms1.Mallocs-ms0.Mallocs) / float64(max(len(all), 1)),
	}, nil
}

// publishCeiling is how fast this machine stores n of the same events in
// JetStream with async publishes and no HTTP at all: the most any batch
// endpoint can reach here.
func publishCeiling(ctx context.Context, cfg Config, n int) (float64, error) {
	env, err := startNATS(ctx, cfg.Dir)
	if err != nil {
		return 0, err
	}
	defer env.close()
	run := fmt.Sprintf("c%d", time.Now().UnixNano())
	subjects, data := make([]string, n), make([][]byte, n)
	for i := range n {
		subjects[i], data[i] = "contacts.patch.skipcall."+contactID(i), eventJSON(run, i)
	}
	runtime.GC()
	start := time.Now()
	for i := range n {
		if err := publishAsync(ctx, env.js, subjects[i], data[i], run+"-"+strconv.Itoa(i)); err != nil {
			return 0, err
		}
	}
	select {
	case <-env.js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("perf: %d publishes not acknowledged in 2m", n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// --- phase 2: worker vs bare consumer ---

// countingSandbox wraps the Skipcall sandbox, counting successful PATCHes and
// remembering when each contact was first patched.
type countingSandbox struct {
	h       http.Handler
	applied atomic.Int64
	first   sync.Map // contact id -> time.Time
}

func (c *countingSandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusWriter{ResponseWriter: w}
	c.h.ServeHTTP(rec, r)
	if r.Method == http.MethodPatch && rec.status == http.StatusOK {
		c.applied.Add(1)
		c.first.LoadOrStore(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:], time.Now())
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func startSandbox(latency time.Duration) (*countingSandbox, string, func(), error) {
	sk, err := sandbox.NewSkipcall(sandbox.SkipcallConfig{APIKeys: []string{skKey}, AutoCreate: true})
	if err != nil {
		return nil, "", nil, err
	}
	sk.SetFaults(sandbox.Faults{Latency: latency})
	cs := &countingSandbox{h: sk}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: cs, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return cs, "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func prefill(ctx context.Context, js jetstream.JetStream, n int) error {
	run := fmt.Sprintf("w%d", time.Now().UnixNano())
	for i := 0; i < n; i++ {
		ev, err := events.Decode(eventJSON(run, i))
		if err != nil {
			return err
		}
		data, _ := ev.Marshal()
		if err := publishAsync(ctx, js, ev.Subject("contacts"), data, ev.ID); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("perf: prefill of %d events not acknowledged in 2m", n)
	}
}

func workerPhase(ctx context.Context, cfg Config, floor bool, latency time.Duration) (float64, error) {
	env, err := startNATS(ctx, cfg.Dir)
	if err != nil {
		return 0, err
	}
	defer env.close()
	cs, url, stop, err := startSandbox(latency)
	if err != nil {
		return 0, err
	}
	defer stop()
	if err := prefill(ctx, env.js, cfg.Events); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hc := processor.NewHTTPClient(10*time.Second, cfg.Concurrency)
	sc, err := skipcall.New(skipcall.Config{BaseURL: url, APIKey: skKey, Timeout: 10 * time.Second}, hc, cfg.Concurrency)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	var done chan error
	if floor {
		done, err = bareConsumer(wctx, env, sc, cfg.Concurrency)
		if err != nil {
			return 0, err
		}
	} else {
		w, closeBudgets, err := newWorker(ctx, env, cfg, sc, url)
		if err != nil {
			return 0, err
		}
		defer closeBudgets()
		done = make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
	}
	deadline := time.Now().Add(5 * time.Minute)
	for cs.applied.Load() < int64(cfg.Events) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("perf: only %d of %d applied in 5m", cs.applied.Load(), cfg.Events)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	return float64(cfg.Events) / elapsed.Seconds(), nil
}

// bareConsumer is the floor of the worker: a pull consumer whose messages
// are PATCHed by n goroutines and acknowledged, with no ordering, retry or
// classification.
func bareConsumer(ctx context.Context, env *natsEnv, sc *skipcall.Client, n int) (chan error, error) {
	cons, err := env.js.CreateOrUpdateConsumer(ctx, env.scfg.EventsStream, env.scfg.ConsumerConfig(30*time.Second, 4*n))
	if err != nil {
		return nil, err
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * n))
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				var ev events.Event
				if err := json.Unmarshal(m.Data(), &ev); err != nil {
					_ = m.Term()
					continue
				}
				if _, err := sc.Patch(ctx, &ev); err != nil {
					_ = m.Nak()
					continue
				}
				_ = m.Ack()
			}
		}()
	}
	go func() {
		<-ctx.Done()
		iter.Stop()
	}()
	go func() {
		for {
			m, err := iter.Next()
			if err != nil {
				break
			}
			msgs <- m
		}
		close(msgs)
		wg.Wait()
		done <- nil
	}()
	return done, nil
}

// --- phase 3: end to end at a fixed rate ---

func endToEnd(ctx context.Context, cfg Config) (loadResult, error) {
	env, err := startNATS(ctx, cfg.Dir)
	if err != nil {
		return loadResult{}, err
	}
	defer env.close()
	cs, url, stop, err := startSandbox(0)
	if err != nil {
		return loadResult{}, err
	}
	defer stop()
	ih, err := ingest.New(ingestConfig(), env.js, env.scfg.EventsStream, env.scfg.SubjectPrefix, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return loadResult{}, err
	}
	defer func() { _ = ih.Close() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loadResult{}, err
	}
	srv := &http.Server{Handler: ih, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	sc, err := skipcall.New(skipcall.Config{BaseURL: url, APIKey: skKey, Timeout: 10 * time.Second}, nil, cfg.Concurrency)
	if err != nil {
		return loadResult{}, err
	}
	w, closeBudgets, err := newWorker(ctx, env, cfg, sc, url)
	if err != nil {
		return loadResult{}, err
	}
	defer closeBudgets()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { cancel(); <-done }()

	n := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	sent := make([]time.Time, n)
	run := fmt.Sprintf("e%d", time.Now().UnixNano())
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(cfg.Rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		<-tick.C
		sent[i] = time.Now()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ln.Addr().String()+"/v1/events", bytes.NewReader(eventJSON(run, i)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}(i)
	}
	wg.Wait()
	deadline := time.Now().Add(time.Minute)
	for cs.applied.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var lat latencies
	for i := 0; i < n; i++ {
		if v, ok := cs.first.Load(contactID(i)); ok {
			lat = append(lat, v.(time.Time).Sub(sent[i]))
		}
	}
	if len(lat) < n {
		return loadResult{}, fmt.Errorf("perf: %d of %d events applied within a minute", len(lat), n)
	}
	slices.Sort(lat)
	return loadResult{rate: float64(n) / cfg.Duration.Seconds(), lat: lat}, nil
}
