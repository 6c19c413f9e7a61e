package dev

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/internal/perf"
	"github.com/patchbay/patchbay/internal/proc"
)

// runBench runs the load harness and prints, and optionally writes, its
// table: by default the process mode (every part its own process, as users
// run it); with -micro the in-process phases. 'bench role NAME' runs one of
// the process mode's helper processes.
func runBench(ctx context.Context, args []string, out, log io.Writer) error {
	if len(args) >= 2 && args[0] == "role" {
		return perf.Role(ctx, args[1], args[2:], out)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	micro := fs.Bool("micro", false, "run the in-process micro-benchmarks instead of the process mode")
	pcfg := perf.ProcessConfig{}
	fs.IntVar(&pcfg.Runs, "runs", 3, "process mode: runs of each row, alternating with its floor")
	fs.IntVar(&pcfg.Single, "single", 20000, "process mode: events per single-event ingest run")
	fs.IntVar(&pcfg.Batch, "batch", 100000, "process mode: events per batch-of-100 ingest run")
	fs.IntVar(&pcfg.Events, "queue", 100000, "process mode: events queued for each worker run")
	sweep := fs.String("sweep", "8,16,64,128", "process mode: worker concurrencies of the sweep (empty: none)")
	fs.IntVar(&pcfg.SweepRuns, "sweep-runs", 1, "process mode: runs of each sweep concurrency")
	fs.BoolVar(&pcfg.Peer, "peer", true, "process mode: build and run the Watermill peer (bench/watermill)")
	peerSubs := fs.String("peer-subscribers", "64,256", "process mode: the Watermill peer worker's subscriber counts; each, with each -peer-ack mode, is its own worker row in every run, against the same floor, and the best is marked, so the peer runs at its own best setting (default: 64, where it drained fastest as separate processes in issue 19, and 256, patchbay's default concurrency; 4 peer runs per run with -peer-ack's default)")
	peerAcks := fs.String("peer-ack", "async,sync", "process mode: the Watermill peer worker's ack modes, of async (watermill-nats AckAsync) and sync (AckSync, each ack confirmed)")
	fs.DurationVar(&pcfg.Timeout, "timeout", 3*time.Minute, "process mode: longest one run may take")
	rows := fs.String("rows", "", "process mode: rows to run, of single,batch,worker,backlog (empty: all but backlog, which is long; the sweep runs with worker)")
	var bcfg perf.BacklogConfig
	fs.IntVar(&bcfg.Contacts, "backlog-contacts", 1000, "backlog row: contacts with changes")
	fs.IntVar(&bcfg.Events, "backlog-events", 10000, "backlog row: events queued over them")
	fs.IntVar(&bcfg.Limit, "backlog-limit", 100, "backlog row: the provider's requests per window")
	fs.DurationVar(&bcfg.Window, "backlog-window", 10*time.Second, "backlog row: the provider's window")
	backlogTimeout := fs.Duration("backlog-timeout", 0, "backlog row: longest one drain may take, then the row says (not drained) and keeps its figures (0: three times the ideal, at least -timeout)")
	backlogWorkers := fs.String("backlog-workers", "1,3", "backlog row: worker processes of each drain, comma separated")
	fs.BoolVar(&bcfg.Shuffled, "backlog-shuffled", true, "backlog row: events queued in random order (false: contact by contact)")
	fs.StringVar(&pcfg.ProfileDir, "profile", "", "process mode: write CPU profiles of patchbay's processes and nats-server, from the first run of each patchbay row, to this directory")
	fs.IntVar(&pcfg.ProfileSeconds, "profile-seconds", 10, "process mode: length of each profile")
	fs.IntVar(&pcfg.Partitions, "partitions", 0, "process mode: partitions of the events stream (0: patchbay's default; -1: none)")
	workerEnv := fs.String("worker-env", "", "process mode: KEY=VALUE,… added to the environment of this build's worker (not the baseline's)")
	fs.StringVar(&pcfg.Baseline, "baseline", "", "process mode: also run the worker row with patchbay built at this git revision (e.g. b50f17e), against the same floor in the same runs")
	cfg := perf.Config{}
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each closed-loop and fixed-rate phase")
	fs.IntVar(&cfg.Conns, "conns", 64, "HTTP connections of the ingest load")
	fs.IntVar(&cfg.Events, "events", 20000, "micro: events pre-filled for the worker phase")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "worker and floor consumer concurrency")
	fs.DurationVar(&cfg.Latency, "latency", 50*time.Millisecond, "provider latency of the slow-provider phase")
	fs.IntVar(&cfg.Rate, "rate", 500, "offered events/s of the end-to-end phase")
	outFile := fs.String("out", "", "also write the table with date, commit and machine to this file")
	memLoad := fs.Int("memory-events", 20000, "events sent through separate ingest and worker processes before measuring their RSS (0: skip)")
	queued := fs.Int("queued", 100000, "events queued in JetStream behind a stalled provider while the worker's RSS is measured (0: skip)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (server, floors and load) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *workerEnv != "" {
		pcfg.WorkerEnv = map[string]string{}
		for _, kv := range strings.Split(*workerEnv, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("bench: -worker-env %q: want KEY=VALUE,…", kv)
			}
			pcfg.WorkerEnv[k] = v
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	dir, err := os.MkdirTemp("", "patchbay-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Dir = dir
	var table, settings string
	if *micro {
		table, err = runMicro(ctx, cfg, *memLoad, *queued, log)
		settings = fmt.Sprintf("micro, duration %s, %d connections, %d worker events, concurrency %d, provider latency %s, end-to-end rate %d/s",
			cfg.Duration, cfg.Conns, cfg.Events, cfg.Concurrency, cfg.Latency, cfg.Rate)
	} else {
		pcfg.Dir, pcfg.Conns = dir, cfg.Conns
		if pcfg.Root, err = proc.ModuleRoot(); err != nil {
			return err
		}
		backlog := false
		for _, r := range strings.Split(*rows, ",") {
			switch r = strings.TrimSpace(r); r {
			case "":
			case "single", "batch", "worker":
				pcfg.Rows = append(pcfg.Rows, r)
			case "backlog":
				backlog = true
			default:
				return fmt.Errorf("bench: -rows: %q is not one of single, batch, worker, backlog", r)
			}
		}
		if pcfg.ProfileDir != "" {
			if err := os.MkdirAll(pcfg.ProfileDir, 0o755); err != nil {
				return err
			}
		}
		if pcfg.Peer {
			if pcfg.PeerSettings, err = perf.ParsePeerSettings(*peerSubs, *peerAcks); err != nil {
				return fmt.Errorf("bench: -peer-subscribers, -peer-ack: %w", err)
			}
		}
		bcfg.Workers = bcfg.Workers[:0]
		for _, f := range strings.Split(*backlogWorkers, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("bench: -backlog-workers: %q is not a worker count", f)
			}
			bcfg.Workers = append(bcfg.Workers, n)
		}
		for _, f := range strings.Split(*sweep, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			c, err := strconv.Atoi(f)
			if err != nil || c < 1 {
				return fmt.Errorf("bench: -sweep: %q is not a concurrency", f)
			}
			pcfg.Sweep = append(pcfg.Sweep, c)
		}
		if !backlog || len(pcfg.Rows) > 0 {
			var rep perf.ProcessReport
			rep, err = perf.RunProcesses(ctx, pcfg, log)
			table = perf.ProcessMarkdown(rep)
			settings = fmt.Sprintf("processes, %d runs, %d single events and %d in batches of 100 per ingest run, %d connections, %d events queued per worker run, sweep %v",
				pcfg.Runs, pcfg.Single, pcfg.Batch, pcfg.Conns, pcfg.Events, pcfg.Sweep)
			if pcfg.Peer {
				settings += fmt.Sprintf(", Watermill peer worker at subscribers %s and %s acks", *peerSubs, *peerAcks)
			}
		}
		if backlog && err == nil {
			bcfg.Root, bcfg.Dir, bcfg.Timeout = pcfg.Root, dir, max(pcfg.Timeout, 3*time.Duration(float64(bcfg.Contacts)/float64(max(bcfg.Limit, 1))*float64(bcfg.Window)))
			if *backlogTimeout > 0 {
				bcfg.Timeout = *backlogTimeout
			}
			if err = bcfg.CheckBacklog(); err != nil {
				return err
			}
			var brows []perf.BacklogRow
			brows, err = perf.RunBacklog(ctx, bcfg, log)
			if table != "" {
				table += "\n"
			}
			table += perf.BacklogMarkdown(brows)
			if settings != "" {
				settings += "; "
			}
			settings += fmt.Sprintf("rate-limited backlog: %d events over %d contacts, limit %d per %s, workers %v", bcfg.Events, bcfg.Contacts, bcfg.Limit, bcfg.Window, bcfg.Workers)
		}
	}
	if err != nil {
		return err
	}
	commit := "unknown"
	if b, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(b))
		if st, err := exec.Command("git", "status", "--porcelain").Output(); err == nil && len(st) > 0 {
			commit += " (with uncommitted changes)"
		}
	}
	report := fmt.Sprintf("patchbay bench %s\n\n- date: %s\n- commit: %s\n- machine: %d cores, %s, %s/%s\n- settings: %s\n\n%s",
		strings.Join(args, " "), time.Now().UTC().Format(time.RFC3339), commit, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		settings, table)
	fmt.Fprint(out, report)
	if *outFile != "" {
		return os.WriteFile(*outFile, []byte(report), 0o644)
	}
	return nil
}

// runMicro runs the in-process phases and, with memLoad, the RSS phase.
func runMicro(ctx context.Context, cfg perf.Config, memLoad, queued int, log io.Writer) (string, error) {
	rows, err := perf.Run(ctx, cfg, log)
	if err != nil {
		return "", err
	}
	table := perf.Markdown(rows)
	if memLoad > 0 {
		root, err := proc.ModuleRoot()
		if err != nil {
			return "", err
		}
		m, err := perf.Memory(ctx, cfg, root, memLoad, queued, log)
		if err != nil {
			return "", err
		}
		table += "\n" + perf.MemoryMarkdown(m)
	}
	return table, nil
}
