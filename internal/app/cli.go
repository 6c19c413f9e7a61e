package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/patchbay/patchbay/dlq"
)

// logConfig selects the log format and level (environment prefix PATCHBAY_LOG_).
type logConfig struct {
	Level  string `envconfig:"LEVEL" default:"info" desc:"debug, info, warn or error"`
	Format string `envconfig:"FORMAT" default:"text" desc:"text or json"`
}

type workerAdmin struct {
	AdminAddr string `envconfig:"ADMIN_ADDR" default:"127.0.0.1:9091" desc:"worker admin listen address: /metrics and /debug/pprof (empty: off)"`
}

// envSpec lists every configuration struct with its environment prefix.
type envSpec struct {
	prefix string
	spec   any
}

type allConfig struct {
	log    logConfig
	ingest IngestConfig
	worker WorkerConfig
	admin  workerAdmin
	dev    DevConfig
}

func (c *allConfig) specs() []envSpec {
	return []envSpec{
		{"patchbay", &c.ingest.Stream},
		{"patchbay_log", &c.log},
		{"patchbay_ingest", &c.ingest.Ingest},
		{"patchbay_worker", &c.worker.Worker},
		{"patchbay_worker", &c.admin},
		{"patchbay_revyops", &c.worker.RevyOps},
		{"patchbay_skipcall", &c.worker.Skipcall},
		{"patchbay_dev", &c.dev},
	}
}

func loadConfig() (*allConfig, error) {
	c := &allConfig{}
	for _, s := range c.specs() {
		if err := envconfig.Process(s.prefix, s.spec); err != nil {
			return nil, err
		}
	}
	c.worker.Stream = c.ingest.Stream
	c.worker.AdminAddr = c.admin.AdminAddr
	return c, nil
}

func newLogger(c logConfig, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("PATCHBAY_LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("PATCHBAY_LOG_FORMAT must be text or json, not %q", c.Format)
}

const usage = `patchbay keeps contacts in sync: webhooks in, provider PATCHes out.

Usage:
  patchbay dev                      run everything in one process (embedded NATS, sandbox providers)
  patchbay ingest                   run the webhook ingest service
  patchbay worker                   run the delivery worker
  patchbay dlq list [-limit N] [-subject S] [-json]
  patchbay dlq replay [-data FILE] SEQ...   (an unmapped letter is looked up again in the contact map)
  patchbay sources check FILE [-sample FILE] [-source NAME] [-content-type T] [-no-secrets]
  patchbay contacts map import FILE.csv | list | get SOURCE TARGET ID | delete SOURCE TARGET ID
  patchbay bench [-duration D] [-out FILE] ...   load harness: ingest and worker against floors, on loopback
  patchbay env                      print every environment variable as a Markdown table

Configuration comes from the environment; see 'patchbay env'.
`

// Main runs the patchbay command line with args (without the program name)
// and returns the process exit code.
func Main(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "patchbay:", err)
		return 2
	}
	log, err := newLogger(cfg.log, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "patchbay:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch args[0] {
	case "dev":
		err = RunDev(ctx, log, cfg.dev, cfg.worker, cfg.ingest)
	case "ingest":
		err = RunIngest(ctx, log, cfg.ingest, nil)
	case "worker":
		err = RunWorker(ctx, log, cfg.worker)
	case "dlq":
		err = runDLQ(ctx, cfg, args[1:], os.Stdout)
	case "sources":
		err = runSources(args[1:], os.Stdout)
	case "contacts":
		err = runContacts(ctx, cfg, args[1:], os.Stdout)
	case "env":
		err = printEnv(cfg, os.Stdout)
	case "bench":
		err = runBench(ctx, args[1:], os.Stdout, os.Stderr)
	default:
		fmt.Fprintf(os.Stderr, "patchbay: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

func printEnv(cfg *allConfig, w io.Writer) error {
	fmt.Fprintln(w, "| Variable | Type | Default | Description |")
	fmt.Fprintln(w, "|---|---|---|---|")
	format := `{{range .}}| {{usage_key .}} | {{usage_type .}} | {{with usage_default .}}{{.}}{{end}} | {{usage_description .}} |
{{end}}`
	for _, s := range cfg.specs() {
		if err := envconfig.Usagef(s.prefix, s.spec, w, format); err != nil {
			return err
		}
	}
	return nil
}

func runDLQ(ctx context.Context, cfg *allConfig, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("dlq: say list or replay")
	}
	scfg := cfg.ingest.Stream
	nc, js, err := connect(ctx, slog.New(slog.DiscardHandler), scfg, "patchbay-dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	store := dlq.NewStore(js, scfg.DLQStream, scfg.SubjectPrefix)
	store.SetResolver(unmappedResolver(cfg, js))
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
		limit := fs.Int("limit", 100, "most letters to list")
		subject := fs.String("subject", "", "subject filter, e.g. contacts.dlq.skipcall.>")
		asJSON := fs.Bool("json", false, "print JSON lines with the payload")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		letters, err := store.List(ctx, *subject, *limit)
		if err != nil {
			return err
		}
		return printLetters(out, letters, *asJSON)
	case "replay":
		fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
		dataFile := fs.String("data", "", "file with a corrected event to publish instead of the stored one (one SEQ only)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		var data []byte
		if *dataFile != "" {
			if fs.NArg() != 1 {
				return errors.New("dlq replay: -data takes exactly one SEQ")
			}
			if data, err = os.ReadFile(*dataFile); err != nil {
				return err
			}
		}
		for _, a := range fs.Args() {
			seq, err := strconv.ParseUint(a, 10, 64)
			if err != nil {
				return fmt.Errorf("dlq replay: %q is not a sequence number", a)
			}
			if err := store.Replay(ctx, seq, data); err != nil {
				return err
			}
			fmt.Fprintf(out, "replayed %d\n", seq)
		}
		return nil
	}
	return fmt.Errorf("dlq: unknown command %q", args[0])
}

func printLetters(out io.Writer, letters []dlq.Letter, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		for _, l := range letters {
			if err := enc.Encode(letterJSON(l)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD AT\tREASON\tSTATUS\tATTEMPTS\tTARGET\tEVENT ID\tDETAIL")
	for _, l := range letters {
		detail := l.Detail
		if l.ErrorCode != "" {
			detail = l.ErrorCode + ": " + l.ErrorMessage
		}
		if len(detail) > 80 {
			detail = detail[:77] + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", l.DLQSeq, l.DeadAt.UTC().Format(time.RFC3339), l.Reason, l.Status, l.Attempts, l.Target, l.EventID, strings.ReplaceAll(detail, "\t", " "))
	}
	return tw.Flush()
}

func letterJSON(l dlq.Letter) map[string]any {
	m := map[string]any{
		"dlq_seq": l.DLQSeq, "dead_at": l.DeadAt, "reason": l.Reason, "detail": l.Detail, "status": l.Status,
		"error_code": l.ErrorCode, "error_message": l.ErrorMessage, "excerpt": l.Excerpt, "attempts": l.Attempts,
		"first_attempt": l.FirstAttempt, "last_attempt": l.LastAttempt, "stream": l.Stream, "stream_seq": l.StreamSeq,
		"subject": l.Subject, "event_id": l.EventID, "target": l.Target,
	}
	if json.Valid(l.Data) {
		m["payload"] = json.RawMessage(l.Data)
	} else {
		m["payload_raw"] = string(l.Data)
	}
	return m
}
