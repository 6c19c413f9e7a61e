package perf

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/proc"
	"github.com/patchbay/patchbay/stream"
)

// ProcessConfig sizes a process-mode run: every part of the pipeline is its
// own process, as users run it. Every phase is bounded in count and time.
type ProcessConfig struct {
	Root      string        // module root: patchbay, nats-server and the peer are built from it
	Dir       string        // scratch directory: binaries and the JetStream store
	Runs      int           // runs of each row, alternating the measured process and its floor
	Single    int           // events per single-event ingest run
	Batch     int           // events per batch-of-100 ingest run
	Conns     int           // connections of the load generator
	Events    int           // events queued for each worker run
	Sweep     []int         // worker concurrencies of the sweep (empty: none)
	SweepRuns int           // runs of each sweep concurrency
	Peer      bool          // build and run the Watermill peer (bench/watermill)
	Timeout   time.Duration // longest one worker run may take to drain its queue
	// PeerSettings are the Watermill peer worker's settings, each its own
	// worker row, run in every run against the same floor as the others
	// (empty: one, as many subscribers as the worker's default
	// concurrency, with async acks).
	PeerSettings []PeerSetting
	// Rows selects the rows to run: "single", "batch", "worker" (empty:
	// all). The sweep runs with "worker".
	Rows []string
	// ProfileDir, if set, receives CPU profiles of patchbay's processes
	// and of nats-server, taken during the first run of each patchbay row
	// (ProfileSeconds long, from a second after the process starts).
	ProfileDir     string
	ProfileSeconds int
	// Baseline, if set, is a git revision of patchbay (a commit, tag or
	// branch of cfg.Root's repository): its worker is built from a
	// detached worktree and measured in the same runs as this build's,
	// against the same floor, so a change's cost is a ratio of one run.
	Baseline string
	// WorkerEnv is added to the environment of this build's worker (not
	// the baseline's): a setting's cost, measured against the baseline
	// row or against a run without it.
	WorkerEnv map[string]string
	// Partitions, if not 0, overrides the events stream's partition count
	// (benchStream's is patchbay's default; -1: none): what routing each
	// contact to one worker costs an unlimited target.
	Partitions int
}

// PeerSetting is one setting of the Watermill peer's worker.
type PeerSetting struct {
	Subscribers int    // watermill-nats SubscribersCount: messages in flight
	Ack         string // "async" (AckAsync) or "sync" (AckSync)
}

func (p PeerSetting) String() string {
	return fmt.Sprintf("%d subscribers, %s acks", p.Subscribers, p.Ack)
}

// ParsePeerSettings parses the bench's -peer-subscribers and -peer-ack
// lists (comma-separated) into every pair of the two, ack mode by ack mode
// in the order given.
func ParsePeerSettings(subscribers, acks string) ([]PeerSetting, error) {
	var counts []int
	for _, f := range strings.Split(subscribers, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("perf: peer subscribers: %q is not a count", f)
		}
		if slices.Contains(counts, n) {
			return nil, fmt.Errorf("perf: peer subscribers: %d given twice", n)
		}
		counts = append(counts, n)
	}
	var modes []string
	for _, f := range strings.Split(acks, ",") {
		switch f = strings.TrimSpace(f); {
		case f == "":
		case f != "async" && f != "sync":
			return nil, fmt.Errorf("perf: peer ack mode %q: want async or sync", f)
		case slices.Contains(modes, f):
			return nil, fmt.Errorf("perf: peer ack mode %s given twice", f)
		default:
			modes = append(modes, f)
		}
	}
	if len(counts) == 0 || len(modes) == 0 {
		return nil, errors.New("perf: the peer needs at least one subscriber count and one ack mode (-peer=false runs without it)")
	}
	var out []PeerSetting
	for _, m := range modes {
		for _, n := range counts {
			out = append(out, PeerSetting{Subscribers: n, Ack: m})
		}
	}
	return out, nil
}

// peerSettings are the peer worker's settings to run.
func (c ProcessConfig) peerSettings() []PeerSetting {
	if !c.Peer {
		return nil
	}
	if len(c.PeerSettings) == 0 {
		return []PeerSetting{{Subscribers: defaultConcurrency, Ack: "async"}}
	}
	return c.PeerSettings
}

// BestRow is the index of the row with the highest median ratio to its
// floor (the first of equals), or -1 if no row has a ratio.
func BestRow(rows []ProcessRow) int {
	best, bestRatio := -1, 0.0
	for i, r := range rows {
		ratios := r.Ratios()
		if len(ratios) == 0 {
			continue
		}
		if m := median(ratios); best < 0 || m > bestRatio {
			best, bestRatio = i, m
		}
	}
	return best
}

// runs reports whether row is selected.
func (c ProcessConfig) runs(row string) bool {
	return len(c.Rows) == 0 || slices.Contains(c.Rows, row)
}

// Sample is one run of one process.
type Sample struct {
	Rate    float64       // events per second
	P99     time.Duration // per request (ingest rows)
	Stall   time.Duration // longest span without progress (ack floor, or answered requests)
	RSS     int64         // peak resident memory of the measured process (VmHWM)
	Partial bool          // the queue was not drained within the timeout: Rate counts what was
	Retried int           // requests answered 503 (or not at all) and sent again
	CPU     time.Duration // CPU time of the measured process over the run
	// ServerCPU is nats-server's CPU time over the run: the share of the
	// pipeline's work that the measured process puts on JetStream.
	ServerCPU time.Duration
	Events    int // events the run moved, for CPU per event
}

// ProcessRow is one line of the process-mode table: a measured process and
// its floor, over the same runs.
type ProcessRow struct {
	Name, Process, Floor string
	Samples, Floors      []Sample
	// SharedFloor marks a row whose floor runs are another row's (the
	// ratio is then against the floor's median, not run by run).
	SharedFloor bool
	// Best marks the row of a sweep with the highest median ratio (the
	// Watermill peer's best setting).
	Best bool
}

// ProcessReport is the outcome of a process-mode run.
type ProcessReport struct {
	Rows []ProcessRow
	// HelperRSS is the peak RSS of the processes around the measured ones
	// (nats-server, target, load generator), by name.
	HelperRSS map[string]int64
}

type procBench struct {
	cfg                   ProcessConfig
	log                   io.Writer
	bin, natsBin, peerBin string
	baseBin               string // the worker of cfg.Baseline, when set
	srv                   *proc.NATSServer
	nc                    *nats.Conn
	js                    jetstream.JetStream
	scfg                  stream.Config
	target                *proc.Process
	targetURL             string
	helperRSS             map[string]int64
	runSeq                int
	srvProfile            string          // nats-server's pprof address (with ProfileDir)
	profiled              map[string]bool // labels already profiled
}

// RunProcesses builds patchbay, nats-server and (with cfg.Peer) the
// Watermill peer, runs them as separate processes on loopback with the load
// generator and the PATCH target as processes too, and measures each row
// against its floor in the same run. Every process it starts is stopped
// before it returns.
func RunProcesses(ctx context.Context, cfg ProcessConfig, log io.Writer) (ProcessReport, error) {
	b := &procBench{cfg: cfg, log: log, helperRSS: map[string]int64{}, profiled: map[string]bool{}}
	defer b.close()
	if err := b.setup(ctx); err != nil {
		return ProcessReport{}, err
	}
	single := ProcessRow{Name: "ingest, single events", Process: "patchbay ingest", Floor: "floor: HTTP handler, publish with Nats-Msg-Id, wait for PubAck"}
	peerSingle := ProcessRow{Name: "ingest, single events", Process: "Watermill peer ingest", Floor: "same floor"}
	batch := ProcessRow{Name: "ingest, batches of 100", Process: "patchbay ingest", Floor: "ceiling: async publish straight to JetStream"}
	worker := ProcessRow{Name: "worker, default concurrency", Process: "patchbay worker", Floor: "floor: bare consumer (Fetch, PATCH, ack)"}
	peers := cfg.peerSettings()
	peerWorkers := make([]ProcessRow, len(peers))
	for i, ps := range peers {
		peerWorkers[i] = ProcessRow{Name: "worker", Process: "Watermill peer worker, " + ps.String(), Floor: "same floor"}
	}
	stateFloor := ProcessRow{Name: "worker, durable state floor", Process: "bare consumer + KV read and compare-and-set per event", Floor: "same floor"}
	baseWorker := ProcessRow{Name: "worker, default concurrency", Process: "patchbay worker at " + cfg.Baseline, Floor: "same floor"}
	for r := range cfg.Runs {
		fmt.Fprintf(b.log, "run %d of %d\n", r+1, cfg.Runs)
		// Rotate the order each run so no process always goes first.
		ingests := rotate([]string{"patchbay", "floor", "watermill"}, r)
		for _, kind := range ingests {
			if !cfg.runs("single") || kind == "watermill" && !cfg.Peer {
				continue
			}
			s, err := b.ingestRun(ctx, kind, 1, cfg.Single)
			if err != nil {
				return ProcessReport{}, err
			}
			switch kind {
			case "patchbay":
				single.Samples = append(single.Samples, s)
			case "floor":
				single.Floors = append(single.Floors, s)
				peerSingle.Floors = append(peerSingle.Floors, s)
			default:
				peerSingle.Samples = append(peerSingle.Samples, s)
			}
		}
		for _, kind := range rotate([]string{"patchbay", "ceiling"}, r) {
			if !cfg.runs("batch") {
				break
			}
			if kind == "ceiling" {
				s, err := b.ceilingRun(ctx, cfg.Batch)
				if err != nil {
					return ProcessReport{}, err
				}
				batch.Floors = append(batch.Floors, s)
				continue
			}
			s, err := b.ingestRun(ctx, kind, 100, cfg.Batch)
			if err != nil {
				return ProcessReport{}, err
			}
			batch.Samples = append(batch.Samples, s)
		}
		// Every peer setting is its own kind ("watermill:I", I its index
		// in peers), rotated with the others.
		kinds := []string{"patchbay", "bare"}
		for i := range peers {
			kinds = append(kinds, "watermill:"+strconv.Itoa(i))
		}
		kinds = append(kinds, "bare-state", "baseline")
		for _, kind := range rotate(kinds, r) {
			if !cfg.runs("worker") || kind == "baseline" && cfg.Baseline == "" {
				continue
			}
			peer := -1
			if i, ok := strings.CutPrefix(kind, "watermill:"); ok {
				peer, _ = strconv.Atoi(i)
			}
			var s Sample
			var err error
			if peer >= 0 {
				s, err = b.workerRun(ctx, "watermill", peers[peer].Subscribers, peers[peer].Ack)
			} else {
				s, err = b.workerRun(ctx, kind, 0, "")
			}
			if err != nil {
				return ProcessReport{}, err
			}
			if peer >= 0 {
				peerWorkers[peer].Samples = append(peerWorkers[peer].Samples, s)
				continue
			}
			switch kind {
			case "patchbay":
				worker.Samples = append(worker.Samples, s)
			case "bare":
				worker.Floors = append(worker.Floors, s)
				for i := range peerWorkers {
					peerWorkers[i].Floors = append(peerWorkers[i].Floors, s)
				}
				stateFloor.Floors = append(stateFloor.Floors, s)
				baseWorker.Floors = append(baseWorker.Floors, s)
			case "baseline":
				baseWorker.Samples = append(baseWorker.Samples, s)
			case "bare-state":
				stateFloor.Samples = append(stateFloor.Samples, s)
			}
		}
	}
	var rows []ProcessRow
	if cfg.runs("single") {
		rows = append(rows, single)
		if cfg.Peer {
			rows = append(rows, peerSingle)
		}
	}
	if cfg.runs("batch") {
		rows = append(rows, batch)
	}
	if cfg.runs("worker") {
		rows = append(rows, worker)
		if cfg.Baseline != "" {
			rows = append(rows, baseWorker)
		}
		if len(peerWorkers) > 1 {
			if i := BestRow(peerWorkers); i >= 0 {
				peerWorkers[i].Best = true
			}
		}
		rows = append(rows, peerWorkers...)
		rows = append(rows, stateFloor)
	}
	for _, c := range cfg.Sweep {
		if !cfg.runs("worker") {
			break
		}
		row := ProcessRow{Name: fmt.Sprintf("worker, concurrency %d", c), Process: "patchbay worker", Floor: "bare consumer runs above", Floors: worker.Floors, SharedFloor: true}
		for range cfg.SweepRuns {
			s, err := b.workerRun(ctx, "patchbay", c, "")
			if err != nil {
				return ProcessReport{}, err
			}
			row.Samples = append(row.Samples, s)
		}
		rows = append(rows, row)
	}
	b.helperPeak(b.srv.Process)
	b.helperPeak(b.target)
	return ProcessReport{Rows: rows, HelperRSS: b.helperRSS}, nil
}

// buildRevision builds patchbay as it was at rev, from a detached worktree
// of root's repository under dir (removed again once built), into
// dir/patchbay-<rev>.
func buildRevision(ctx context.Context, root, dir, rev string, log io.Writer) (string, error) {
	fmt.Fprintf(log, "building patchbay at %s for the baseline worker row\n", rev)
	tree := filepath.Join(dir, "baseline-src")
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("perf: git %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := git("worktree", "add", "--detach", tree, rev); err != nil {
		return "", err
	}
	defer func() { _ = git("worktree", "remove", "--force", tree) }()
	out := filepath.Join(dir, "rev")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	bin, err := proc.Build(ctx, tree, out)
	if err != nil {
		return "", err
	}
	named := filepath.Join(dir, "patchbay-"+strings.NewReplacer("/", "_", ":", "_").Replace(rev))
	return named, os.Rename(bin, named)
}

func rotate(s []string, r int) []string {
	r %= len(s)
	return append(slices.Clone(s[r:]), s[:r]...)
}

func (b *procBench) setup(ctx context.Context) error {
	fmt.Fprintln(b.log, "building patchbay and nats-server")
	var err error
	if b.bin, err = proc.Build(ctx, b.cfg.Root, b.cfg.Dir); err != nil {
		return err
	}
	if b.natsBin, err = proc.BuildNATSServer(ctx, b.cfg.Root, b.cfg.Dir); err != nil {
		return err
	}
	if b.cfg.Baseline != "" {
		if b.baseBin, err = buildRevision(ctx, b.cfg.Root, b.cfg.Dir, b.cfg.Baseline, b.log); err != nil {
			return err
		}
	}
	if b.cfg.Peer {
		fmt.Fprintln(b.log, "building the Watermill peer (bench/watermill)")
		b.peerBin = filepath.Join(b.cfg.Dir, "watermill")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.peerBin, ".")
		cmd.Dir = filepath.Join(b.cfg.Root, "bench", "watermill")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("perf: build the Watermill peer: %w\n%s", err, out)
		}
	}
	store, err := os.MkdirTemp(b.cfg.Dir, "js")
	if err != nil {
		return err
	}
	var srvArgs []string
	if b.cfg.ProfileDir != "" {
		if b.srvProfile, err = proc.FreeAddr(); err != nil {
			return err
		}
		_, port, _ := net.SplitHostPort(b.srvProfile)
		srvArgs = append(srvArgs, "--profile", port)
	}
	if b.srv, err = proc.StartNATSServer(ctx, b.natsBin, store, srvArgs...); err != nil {
		return err
	}
	if b.nc, err = stream.Connect(ctx, b.srv.URL, "", "bench"); err != nil {
		return err
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		return err
	}
	b.scfg = benchStream(b.srv.URL)
	if b.cfg.Partitions != 0 {
		b.scfg.Partitions = max(b.cfg.Partitions, 0)
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		return err
	}
	if b.target, err = b.role("target", "-addr", addr); err != nil {
		return err
	}
	b.targetURL = "http://" + addr
	return waitTCP(ctx, addr, b.target)
}

func (b *procBench) close() {
	if b.target != nil {
		b.target.Kill()
	}
	if b.nc != nil {
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Kill()
	}
}

// profileEnv, with ProfileDir set and name not yet profiled, gives the
// patchbay process of env an admin listener with pprof under the variable
// addrVar and returns its address; otherwise it returns "".
func (b *procBench) profileEnv(env map[string]string, addrVar, name string) string {
	if b.cfg.ProfileDir == "" || b.profiled[name] {
		return ""
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		return ""
	}
	b.profiled[name] = true
	env[addrVar], env["PATCHBAY_ADMIN_PPROF"] = addr, "true"
	return addr
}

// profile takes CPU profiles of the patchbay process at admin (none if
// admin is "") and of nats-server at once, a second after the process
// started, into ProfileDir as NAME.pprof and NAME-nats-server.pprof. It
// returns a function that waits for both; a profile that fails is reported
// in the log, not as the run's error.
func (b *procBench) profile(ctx context.Context, name, admin string) (wait func()) {
	secs := max(b.cfg.ProfileSeconds, 1)
	get := func(url, file string) {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s?seconds=%d", url, secs), nil)
		if err == nil {
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(req); err == nil {
				var body []byte
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s: %s", resp.Status, body)
				}
				if err == nil {
					err = os.WriteFile(filepath.Join(b.cfg.ProfileDir, file), body, 0o644)
				}
			}
		}
		if err != nil {
			fmt.Fprintf(b.log, "  profile %s: %v\n", file, err)
		}
	}
	done := make(chan struct{}, 2)
	go func() {
		if admin != "" {
			get("http://"+admin+"/debug/pprof/profile", name+".pprof")
		}
		done <- struct{}{}
	}()
	go func() {
		get("http://"+b.srvProfile+"/debug/pprof/profile", name+"-nats-server.pprof")
		done <- struct{}{}
	}()
	return func() { <-done; <-done }
}

// role starts 'patchbay bench role NAME args...'.
func (b *procBench) role(name string, args ...string) (*proc.Process, error) {
	return proc.Start(b.bin, name, append([]string{"bench", "role", name}, args...), nil)
}

func (b *procBench) helperPeak(p *proc.Process) {
	if _, peak, err := p.RSS(); err == nil {
		b.helperRSS[p.Name] = max(b.helperRSS[p.Name], peak)
	}
}

// stop reads p's peak RSS, then kills it.
func stop(p *proc.Process) int64 {
	_, peak, _ := p.RSS()
	p.Kill()
	return peak
}

// reset starts every run from an empty server: every stream, key-value
// buckets included (the worker's per-contact state would otherwise let a
// later run skip PATCHes as superseded), is deleted, and the two streams
// are created as at service start.
func (b *procBench) reset(ctx context.Context) error { return b.resetAs(ctx, b.scfg) }

// resetAs is reset with the streams declared as scfg says (the baseline
// worker predates partitioned subjects, so its runs get a stream without).
func (b *procBench) resetAs(ctx context.Context, scfg stream.Config) error {
	names := b.js.StreamNames(ctx)
	var all []string
	for n := range names.Name() {
		all = append(all, n)
	}
	if err := names.Err(); err != nil {
		return err
	}
	for _, name := range all {
		if err := b.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
	}
	return stream.Ensure(ctx, b.js, scfg)
}

// patched is how many PATCHes the target has answered.
func (b *procBench) patched(ctx context.Context) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.targetURL+"/count", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(body)))
}

// stored is how many messages the events stream holds, and its last sequence.
func (b *procBench) stored(ctx context.Context) (uint64, uint64, error) {
	s, err := b.js.Stream(ctx, b.scfg.EventsStream)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.State.Msgs, info.State.LastSeq, nil
}

func (b *procBench) nextRun() string {
	b.runSeq++
	return fmt.Sprintf("p%d-%d", time.Now().Unix(), b.runSeq)
}

// ingestRun sends n events in requests of batch through kind (patchbay,
// floor or watermill) with the load generator, and checks that the stream
// holds every accepted event.
func (b *procBench) ingestRun(ctx context.Context, kind string, batch, n int) (Sample, error) {
	if err := b.reset(ctx); err != nil {
		return Sample{}, err
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		return Sample{}, err
	}
	var p *proc.Process
	var profile func()
	switch kind {
	case "patchbay", "baseline":
		env := map[string]string{
			"PATCHBAY_NATS_URL": b.srv.URL, "PATCHBAY_INGEST_ADDR": addr, "PATCHBAY_INGEST_ADMIN_ADDR": "",
			"PATCHBAY_INGEST_TOKENS": token, "PATCHBAY_LOG_LEVEL": "warn",
		}
		admin := b.profileEnv(env, "PATCHBAY_INGEST_ADMIN_ADDR", fmt.Sprintf("ingest-%d", batch))
		p, err = proc.Start(b.bin, "patchbay ingest", []string{"ingest"}, env)
		if err == nil && admin != "" {
			profile = b.profile(ctx, fmt.Sprintf("ingest-%d", batch), admin)
		}
	case "floor":
		p, err = b.role("floor-ingest", "-nats", b.srv.URL, "-addr", addr)
	case "watermill":
		p, err = proc.Start(b.peerBin, "Watermill ingest", []string{"ingest", "-nats", b.srv.URL, "-addr", addr}, nil)
	}
	if err != nil {
		return Sample{}, err
	}
	defer p.Kill()
	if err := waitTCP(ctx, addr, p); err != nil {
		return Sample{}, err
	}
	fmt.Fprintf(b.log, "  ingest %s: %d events in requests of %d\n", kind, n, batch)
	srv0, _ := b.srv.CPU()
	var res LoadResult
	if _, err := b.runToResult(&res, "load", "-url", "http://"+addr+"/v1/events", "-n", strconv.Itoa(n),
		"-batch", strconv.Itoa(batch), "-conns", strconv.Itoa(b.cfg.Conns), "-run", b.nextRun()); err != nil {
		return Sample{}, err
	}
	cpu, _ := p.CPU()
	srv1, _ := b.srv.CPU()
	if profile != nil {
		profile()
	}
	rss := stop(p)
	msgs, _, err := b.stored(ctx)
	if err != nil {
		return Sample{}, err
	}
	if msgs != uint64(res.Events) {
		return Sample{}, fmt.Errorf("perf: %s ingest answered 202 for %d events, the stream holds %d", kind, res.Events, msgs)
	}
	// The load generator shares the cores: its cost per event is part of
	// the row's rate.
	if res.CPU > 0 && res.Events > 0 {
		fmt.Fprintf(b.log, "  ingest %s: CPU µs per event: process %.1f, nats-server %.1f, load %.1f\n", kind,
			float64(cpu.Microseconds())/float64(res.Events), float64((srv1-srv0).Microseconds())/float64(res.Events),
			float64(res.CPU.Microseconds())/float64(res.Events))
	}
	if res.Retried > 0 {
		fmt.Fprintf(b.log, "  ingest %s: %d requests retried after a 503 or no answer\n%s\n", kind, res.Retried, tail(p.Output()))
	}
	return Sample{Rate: res.Rate(), P99: res.P99, Stall: res.LongestGap, RSS: rss, Retried: res.Retried,
		CPU: cpu, ServerCPU: srv1 - srv0, Events: res.Events}, nil
}

// runToResult runs a role to its end (bounded by the worker timeout)
// and decodes its result; it returns the role's peak RSS.
func (b *procBench) runToResult(v any, name string, args ...string) (int64, error) {
	p, err := b.role(name, args...)
	if err != nil {
		return 0, err
	}
	defer p.Kill()
	var peak int64
	// Read the peak while the process runs: once it has exited, /proc no
	// longer has it.
	werr := errors.New("running")
	for deadline := time.Now().Add(b.cfg.Timeout); werr != nil && time.Now().Before(deadline); {
		if _, pk, err := p.RSS(); err == nil {
			peak = max(peak, pk)
		}
		werr = p.Wait(50 * time.Millisecond)
		if werr != nil && p.Exited() {
			// It exited just after the wait gave up: take its real exit.
			werr = p.Wait(time.Second)
			break
		}
	}
	b.helperRSS[p.Name] = max(b.helperRSS[p.Name], peak)
	if werr != nil {
		return peak, fmt.Errorf("perf: %s: %w\n%s", name, werr, tail(p.Output()))
	}
	return peak, parseResult(p.Output(), v)
}

func (b *procBench) ceilingRun(ctx context.Context, n int) (Sample, error) {
	if err := b.reset(ctx); err != nil {
		return Sample{}, err
	}
	fmt.Fprintf(b.log, "  ceiling: %d events, async publish\n", n)
	// nats-server's profile under the ceiling's traffic, to set beside
	// its profile under ingest's.
	var profile func()
	if b.cfg.ProfileDir != "" && !b.profiled["ceiling"] {
		b.profiled["ceiling"] = true
		profile = b.profile(ctx, "ceiling", "")
	}
	var res CeilingResult
	srv0, _ := b.srv.CPU()
	rss, err := b.runToResult(&res, "ceiling", "-nats", b.srv.URL, "-n", strconv.Itoa(n), "-run", b.nextRun())
	if profile != nil {
		profile()
	}
	if err != nil {
		return Sample{}, err
	}
	msgs, _, err := b.stored(ctx)
	if err != nil {
		return Sample{}, err
	}
	if msgs != uint64(n) {
		return Sample{}, fmt.Errorf("perf: ceiling published %d events, the stream holds %d", n, msgs)
	}
	srv1, _ := b.srv.CPU()
	if res.CPU > 0 {
		fmt.Fprintf(b.log, "  ceiling: CPU µs per event: process %.1f, nats-server %.1f\n",
			float64(res.CPU.Microseconds())/float64(n), float64((srv1-srv0).Microseconds())/float64(n))
	}
	return Sample{Rate: float64(n) / res.Elapsed.Seconds(), RSS: rss, ServerCPU: srv1 - srv0, Events: n}, nil
}

// workerRun queues cfg.Events events, starts kind (patchbay, bare or
// watermill; concurrency 0: the default; ack: the peer's ack mode) and
// observes its consumer until the queue is drained.
func (b *procBench) workerRun(ctx context.Context, kind string, concurrency int, ack string) (Sample, error) {
	scfg := b.scfg
	if kind == "baseline" {
		scfg.Partitions = 0
	}
	if err := b.resetAs(ctx, scfg); err != nil {
		return Sample{}, err
	}
	if err := prefill(ctx, b.js, b.cfg.Events); err != nil {
		return Sample{}, err
	}
	msgs, _, err := b.stored(ctx)
	if err != nil {
		return Sample{}, err
	}
	if msgs != uint64(b.cfg.Events) {
		return Sample{}, fmt.Errorf("perf: queued %d events, the stream holds %d", b.cfg.Events, msgs)
	}
	before, err := b.patched(ctx)
	if err != nil {
		return Sample{}, err
	}
	var p *proc.Process
	var profile func()
	label := kind
	if concurrency > 0 {
		label += " c=" + strconv.Itoa(concurrency)
	}
	if ack != "" {
		label += " ack=" + ack
	}
	srv0, _ := b.srv.CPU()
	in0, out0, _ := b.srv.Msgs(ctx)
	switch kind {
	case "patchbay", "baseline":
		env := map[string]string{
			"PATCHBAY_NATS_URL": b.srv.URL, "PATCHBAY_WORKER_ADMIN_ADDR": "",
			"PATCHBAY_REVYOPS_BASE_URL": b.targetURL, "PATCHBAY_REVYOPS_API_KEY": "unused",
			"PATCHBAY_SKIPCALL_BASE_URL": b.targetURL, "PATCHBAY_SKIPCALL_API_KEY": skKey,
			"PATCHBAY_SKIPCALL_RATE_PER_MINUTE": "0", "PATCHBAY_LOG_LEVEL": "warn",
		}
		if concurrency > 0 {
			env["PATCHBAY_WORKER_CONCURRENCY"] = strconv.Itoa(concurrency)
		}
		name := fmt.Sprintf("worker-c%d", concurrency)
		bin := b.bin
		if kind == "baseline" {
			name, bin = "worker-baseline", b.baseBin
		} else {
			maps.Copy(env, b.cfg.WorkerEnv)
		}
		admin := b.profileEnv(env, "PATCHBAY_WORKER_ADMIN_ADDR", name)
		p, err = proc.Start(bin, "patchbay worker", []string{"worker"}, env)
		if err == nil && admin != "" {
			profile = b.profile(ctx, name, admin)
		}
	case "bare", "bare-state":
		p, err = b.role("consumer", "-nats", b.srv.URL, "-url", b.targetURL, "-concurrency", strconv.Itoa(defaultConcurrency),
			"-state="+strconv.FormatBool(kind == "bare-state"))
	case "watermill":
		p, err = proc.Start(b.peerBin, "Watermill worker", []string{"worker", "-nats", b.srv.URL, "-target", b.targetURL,
			"-subscribers", strconv.Itoa(cmp.Or(concurrency, defaultConcurrency)), "-ack", cmp.Or(ack, "async"), "-skipcall-key", skKey}, nil)
	}
	if err != nil {
		return Sample{}, err
	}
	defer p.Kill()
	fmt.Fprintf(b.log, "  worker %s: %d queued events\n", label, b.cfg.Events)
	s, err := b.observe(ctx, p)
	if err != nil {
		return Sample{}, err
	}
	s.CPU, _ = p.CPU()
	srv1, _ := b.srv.CPU()
	s.ServerCPU = srv1 - srv0
	if in1, out1, err := b.srv.Msgs(ctx); err == nil && s.Events > 0 {
		// What the process asked of nats-server, counted: messages in
		// (publishes, acks, pull and KV requests) and out per event.
		fmt.Fprintf(b.log, "  worker %s: %.2f NATS messages in, %.2f out per event\n", label,
			float64(in1-in0)/float64(s.Events), float64(out1-out0)/float64(s.Events))
	}
	if profile != nil {
		profile()
	}
	s.RSS = stop(p)
	after, err := b.patched(ctx)
	if err != nil {
		return Sample{}, err
	}
	if n := after - before; !s.Partial && n < b.cfg.Events {
		return Sample{}, fmt.Errorf("perf: %s acknowledged %d events but the target answered only %d PATCHes", label, b.cfg.Events, n)
	}
	if kind == "bare-state" && !s.Partial {
		// Every event wrote its contact's key (one contact per event).
		st, err := b.js.Stream(ctx, "KV_"+benchStateBucket)
		if err != nil {
			return Sample{}, err
		}
		if n := st.CachedInfo().State.Msgs; n != uint64(b.cfg.Events) {
			return Sample{}, fmt.Errorf("perf: %s acknowledged %d events but stored %d keys", label, b.cfg.Events, n)
		}
	}
	if s.Partial {
		fmt.Fprintf(b.log, "  worker %s: queue not drained in %s (%.0f events/s, longest stall %s); its output:\n%s\n", label, b.cfg.Timeout, s.Rate, s.Stall, tail(p.Output()))
	}
	return s, nil
}

// defaultConcurrency is the worker's default PATCHBAY_WORKER_CONCURRENCY,
// given to the bare consumer and the peer so all three have as many
// PATCHes in flight.
const defaultConcurrency = 256

// observe polls the events stream and its consumers every 100 ms from p's
// start until the stream is empty (a work-queue stream drops each event
// when it is acknowledged) or the timeout, and reports the rate and the
// longest stall: the longest span in which no consumer's ack floor moved
// while events were stored. It looks at every consumer of the stream, so it
// needs no consumer names (the worker keeps one per target).
func (b *procBench) observe(ctx context.Context, p *proc.Process) (Sample, error) {
	start := time.Now()
	floors := map[string]uint64{}
	lastMove := start
	var stall time.Duration
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		case <-tick.C:
		}
		if p.Exited() {
			return Sample{}, fmt.Errorf("perf: %s exited\n%s", p.Name, tail(p.Output()))
		}
		if b.floorsMoved(ctx, floors) {
			lastMove = time.Now()
		}
		msgs, _, err := b.stored(ctx)
		if err != nil {
			return Sample{}, err
		}
		now := time.Now()
		elapsed := now.Sub(start)
		if msgs == 0 {
			return Sample{Rate: float64(b.cfg.Events) / elapsed.Seconds(), Stall: max(stall, now.Sub(lastMove)), Events: b.cfg.Events}, nil
		}
		stall = max(stall, now.Sub(lastMove))
		if elapsed > b.cfg.Timeout {
			done := b.cfg.Events - int(msgs)
			return Sample{Rate: float64(max(done, 0)) / elapsed.Seconds(), Stall: stall, Partial: true, Events: max(done, 0)}, nil
		}
	}
}

// floorsMoved reads the ack floor of every consumer of the events stream
// into floors and reports whether any moved.
func (b *procBench) floorsMoved(ctx context.Context, floors map[string]uint64) bool {
	s, err := b.js.Stream(ctx, b.scfg.EventsStream)
	if err != nil {
		return false
	}
	moved := false
	for c := range s.ListConsumers(ctx).Info() {
		if f, ok := floors[c.Name]; !ok || f != c.AckFloor.Stream {
			moved = moved || c.AckFloor.Stream > 0
			floors[c.Name] = c.AckFloor.Stream
		}
	}
	return moved
}

// waitTCP waits until addr accepts connections, p exits, or ctx ends.
func waitTCP(ctx context.Context, addr string, p *proc.Process) error {
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("perf: %s exited\n%s", p.Name, tail(p.Output()))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("perf: %s did not listen on %s in a minute", p.Name, addr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// --- report ---

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread renders the median with the min and max of v.
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "—"
	}
	m := median(v)
	if len(v) == 1 {
		return fmt.Sprintf(format, m)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", m, slices.Min(v), slices.Max(v))
}

func rates(s []Sample) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = x.Rate
	}
	return out
}

func p99s(s []Sample) []float64 {
	var out []float64
	for _, x := range s {
		if x.P99 > 0 {
			out = append(out, ms(x.P99))
		}
	}
	return out
}

// Ratios are each run's rate over its floor's in the same run; a row with
// a shared floor is divided by the floor's median.
func (r ProcessRow) Ratios() []float64 {
	var out []float64
	for i, s := range r.Samples {
		switch {
		case r.SharedFloor && len(r.Floors) > 0:
			out = append(out, s.Rate/median(rates(r.Floors)))
		case i < len(r.Floors) && r.Floors[i].Rate > 0:
			out = append(out, s.Rate/r.Floors[i].Rate)
		}
	}
	return out
}

// cpuPerEvent renders the median CPU time per event of the measured
// process and of nats-server over the runs that moved every event.
func cpuPerEvent(s []Sample) string {
	var own, srv []float64
	for _, x := range s {
		if x.Events > 0 {
			own = append(own, float64(x.CPU.Microseconds())/float64(x.Events))
			srv = append(srv, float64(x.ServerCPU.Microseconds())/float64(x.Events))
		}
	}
	if len(srv) == 0 {
		return "—"
	}
	o := "—"
	if median(own) > 0 {
		o = micros(median(own))
	}
	return o + " / " + micros(median(srv))
}

// micros renders µs per event: with a decimal below 100, where whole
// numbers would hide a change of 10 % (batches cost a few µs per event).
// /proc's CPU times count 10 ms ticks, so a run of 100,000 events resolves
// 0.1 µs.
func micros(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func summary(s []Sample) (stall time.Duration, rss int64, partial, retried int) {
	for _, x := range s {
		stall, rss, retried = max(stall, x.Stall), max(rss, x.RSS), retried+x.Retried
		if x.Partial {
			partial++
		}
	}
	return
}

// ProcessMarkdown renders the report: per row, the measured process and, on
// the next line, its floor; rates as median (min–max) over the runs.
func ProcessMarkdown(rep ProcessReport) string {
	var b strings.Builder
	b.WriteString("| row | process | runs | events/s, median (min–max) | ratio to floor, median (min–max) | p99 per request, ms | longest stall | peak RSS | CPU µs per event: process / nats-server |\n|---|---|---|---|---|---|---|---|---|\n")
	line := func(name, process string, s []Sample, ratio string) {
		stall, rss, partial, retried := summary(s)
		runs := strconv.Itoa(len(s))
		if partial > 0 {
			runs += fmt.Sprintf(" (%d not drained in time)", partial)
		}
		if retried > 0 {
			runs += fmt.Sprintf(" (%d requests retried after 503)", retried)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, process, runs, spread(rates(s), "%.0f"), ratio,
			spread(p99s(s), "%.1f"), stall.Round(time.Millisecond), mib(rss), cpuPerEvent(s))
	}
	var best []ProcessRow
	for _, r := range rep.Rows {
		process := r.Process
		if r.Best {
			process += " (best)"
			best = append(best, r)
		}
		line(r.Name, process, r.Samples, spread(r.Ratios(), "%.2f"))
		if !r.SharedFloor && r.Floor != "same floor" {
			line("", r.Floor, r.Floors, "1")
		}
	}
	for _, r := range best {
		fmt.Fprintf(&b, "\nBest of the sweep: %s, median ratio to the floor %.2f.\n", r.Process, median(r.Ratios()))
	}
	if len(rep.HelperRSS) > 0 {
		b.WriteString("\n| helper process | peak RSS |\n|---|---|\n")
		names := make([]string, 0, len(rep.HelperRSS))
		for n := range rep.HelperRSS {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(&b, "| %s | %s |\n", n, mib(rep.HelperRSS[n]))
		}
	}
	return b.String()
}
