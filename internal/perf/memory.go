package perf

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/patchbay/patchbay/internal/proc"
)

// MemoryResult is the resident memory of the real binaries, each its own process.
type MemoryResult struct {
	Loaded         int   // events sent through ingest and applied by the worker
	IngestRSS      int64 // ingest after the load, bytes
	IngestPeak     int64
	WorkerRSS      int64 // worker after the load
	WorkerPeak     int64
	Queued         int   // events waiting in JetStream for the second measurement
	WorkerQueued   int64 // worker RSS while Queued events wait
	WorkerQueuedPk int64
	IngestQueued   int64 // ingest RSS while Queued events wait
}

// Memory builds the patchbay binary, runs 'patchbay ingest' and 'patchbay
// worker' as processes against an embedded JetStream and the sandbox, sends
// load events through them, then fills the stream with queued events behind
// a slow provider and measures the worker again. root is the module root.
func Memory(ctx context.Context, cfg Config, root string, load, queued int, log io.Writer) (MemoryResult, error) {
	res := MemoryResult{Loaded: load, Queued: queued}
	bin, err := proc.Build(ctx, root, cfg.Dir)
	if err != nil {
		return res, err
	}
	env, err := startNATS(ctx, cfg.Dir)
	if err != nil {
		return res, err
	}
	defer env.close()
	cs, url, stop, err := startSandbox(0)
	if err != nil {
		return res, err
	}
	defer stop()
	ingAddr, err := proc.FreeAddr()
	if err != nil {
		return res, err
	}
	ing, err := proc.Start(bin, "ingest", []string{"ingest"}, map[string]string{
		"PATCHBAY_NATS_URL": env.scfg.URL, "PATCHBAY_INGEST_ADDR": ingAddr, "PATCHBAY_INGEST_ADMIN_ADDR": "",
		"PATCHBAY_INGEST_TOKENS": token, "PATCHBAY_LOG_LEVEL": "warn",
	})
	if err != nil {
		return res, err
	}
	defer ing.Kill()
	workerEnv := map[string]string{
		"PATCHBAY_NATS_URL": env.scfg.URL, "PATCHBAY_WORKER_ADMIN_ADDR": "", "PATCHBAY_WORKER_CONCURRENCY": fmt.Sprint(cfg.Concurrency),
		"PATCHBAY_REVYOPS_BASE_URL": url, "PATCHBAY_REVYOPS_API_KEY": "unused",
		"PATCHBAY_SKIPCALL_BASE_URL": url, "PATCHBAY_SKIPCALL_API_KEY": skKey, "PATCHBAY_SKIPCALL_RATE_PER_MINUTE": "0", "PATCHBAY_LOG_LEVEL": "warn",
	}
	wk, err := proc.Start(bin, "worker", []string{"worker"}, workerEnv)
	if err != nil {
		return res, err
	}
	defer wk.Kill()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := proc.WaitHTTP(wctx, "http://"+ingAddr+"/readyz", 200); err != nil {
		return res, fmt.Errorf("%w\n%s", err, ing.Output())
	}

	fmt.Fprintf(log, "memory: %d events through ingest and worker processes\n", load)
	client := &http.Client{Timeout: 10 * time.Second}
	run := fmt.Sprintf("m%d", time.Now().UnixNano())
	const batch = 100
	for i := 0; i < load; i += batch {
		var b strings.Builder
		b.WriteByte('[')
		for k := i; k < min(i+batch, load); k++ {
			if k > i {
				b.WriteByte(',')
			}
			b.Write(eventJSON(run, k))
		}
		b.WriteByte(']')
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ingAddr+"/v1/events", strings.NewReader(b.String()))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return res, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return res, fmt.Errorf("perf: ingest answered %d", resp.StatusCode)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for cs.applied.Load() < int64(load) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("perf: %d of %d applied", cs.applied.Load(), load)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if res.IngestRSS, res.IngestPeak, err = ing.RSS(); err != nil {
		return res, err
	}
	if res.WorkerRSS, res.WorkerPeak, err = wk.RSS(); err != nil {
		return res, err
	}
	if queued == 0 {
		return res, nil
	}

	// Queue: a provider that answers after a minute keeps every event in JetStream.
	wk.Kill()
	fmt.Fprintf(log, "memory: queueing %d events behind a stalled provider\n", queued)
	if err := prefill(ctx, env.js, queued); err != nil {
		return res, err
	}
	stalled, surl, sstop, err := startSandbox(time.Minute)
	if err != nil {
		return res, err
	}
	defer sstop()
	_ = stalled
	workerEnv["PATCHBAY_SKIPCALL_BASE_URL"] = surl
	workerEnv["PATCHBAY_SKIPCALL_TIMEOUT"] = "2m"
	wk2, err := proc.Start(bin, "worker", []string{"worker"}, workerEnv)
	if err != nil {
		return res, err
	}
	defer wk2.Kill()
	// Let the worker connect, fill its in-flight window and sit on it.
	select {
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if wk2.Exited() {
		return res, fmt.Errorf("perf: worker exited\n%s", wk2.Output())
	}
	if res.IngestQueued, _, err = ing.RSS(); err != nil {
		return res, err
	}
	res.WorkerQueued, res.WorkerQueuedPk, err = wk2.RSS()
	return res, err
}

// MemoryMarkdown renders m as a table.
func MemoryMarkdown(m MemoryResult) string {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	s := "| process | when | RSS | peak RSS |\n|---|---|---|---|\n"
	s += fmt.Sprintf("| ingest | after %d events | %s | %s |\n", m.Loaded, mib(m.IngestRSS), mib(m.IngestPeak))
	s += fmt.Sprintf("| worker | after %d events | %s | %s |\n", m.Loaded, mib(m.WorkerRSS), mib(m.WorkerPeak))
	if m.Queued > 0 {
		s += fmt.Sprintf("| ingest | %d events queued in JetStream | %s | — |\n", m.Queued, mib(m.IngestQueued))
		s += fmt.Sprintf("| worker | %d events queued in JetStream, provider stalled | %s | %s |\n", m.Queued, mib(m.WorkerQueued), mib(m.WorkerQueuedPk))
	}
	return s
}
