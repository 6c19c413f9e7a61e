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
	"strings"
	"time"

	"github.com/patchbay/patchbay/internal/perf"
	"github.com/patchbay/patchbay/internal/proc"
)

// runBench runs the load harness and prints, and optionally writes, its table.
func runBench(ctx context.Context, args []string, out, log io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg := perf.Config{}
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each closed-loop and fixed-rate phase")
	fs.IntVar(&cfg.Conns, "conns", 64, "HTTP connections of the ingest load")
	fs.IntVar(&cfg.Events, "events", 20000, "events pre-filled for the worker phase")
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
	rows, err := perf.Run(ctx, cfg, log)
	if err != nil {
		return err
	}
	table := perf.Markdown(rows)
	if *memLoad > 0 {
		root, err := proc.ModuleRoot()
		if err != nil {
			return err
		}
		m, err := perf.Memory(ctx, cfg, root, *memLoad, *queued, log)
		if err != nil {
			return err
		}
		table += "\n" + perf.MemoryMarkdown(m)
	}
	commit := "unknown"
	if b, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(b))
		if st, err := exec.Command("git", "status", "--porcelain").Output(); err == nil && len(st) > 0 {
			commit += " (with uncommitted changes)"
		}
	}
	report := fmt.Sprintf("patchbay bench %s\n\n- date: %s\n- commit: %s\n- machine: %d cores, %s, %s/%s\n- settings: duration %s, %d connections, %d worker events, concurrency %d, provider latency %s, end-to-end rate %d/s\n\n%s",
		strings.Join(args, " "), time.Now().UTC().Format(time.RFC3339), commit, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		cfg.Duration, cfg.Conns, cfg.Events, cfg.Concurrency, cfg.Latency, cfg.Rate, table)
	fmt.Fprint(out, report)
	if *outFile != "" {
		return os.WriteFile(*outFile, []byte(report), 0o644)
	}
	return nil
}
