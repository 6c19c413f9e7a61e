package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kelseyhightower/envconfig"

	"github.com/patchbay/patchbay/internal/tracing"
)

// LogConfig selects the log format and level (environment prefix PATCHBAY_LOG_).
type LogConfig struct {
	Level  string `envconfig:"LEVEL" default:"info" desc:"debug, info, warn or error"`
	Format string `envconfig:"FORMAT" default:"text" desc:"text or json"`
}

type workerAdmin struct {
	AdminAddr string `envconfig:"ADMIN_ADDR" default:"127.0.0.1:9091" desc:"worker admin listen address: /metrics and, with PATCHBAY_ADMIN_PPROF, /debug/pprof (empty: off)"`
}

// EnvSpec is one configuration struct read by envconfig with its prefix.
type EnvSpec struct {
	Prefix string
	Spec   any
}

// Config is the production configuration, read from the environment.
type Config struct {
	Log    LogConfig
	Trace  tracing.Config
	Admin  AdminConfig
	Ingest IngestConfig
	Worker WorkerConfig
	admin  workerAdmin
}

func (c *Config) specs() []EnvSpec {
	return []EnvSpec{
		{"patchbay", &c.Ingest.Stream},
		{"patchbay_log", &c.Log},
		{"patchbay_admin", &c.Admin},
		{"patchbay_ingest", &c.Ingest.Ingest},
		{"patchbay_worker", &c.Worker.Worker},
		{"patchbay_worker", &c.admin},
		{"patchbay_revyops", &c.Worker.RevyOps},
		{"patchbay_skipcall", &c.Worker.Skipcall},
	}
}

// Command is a subcommand a binary adds to the production ones (dev mode
// and the bench, in the patchbay binary).
type Command struct {
	Name  string
	Usage string // help lines, each starting with "  patchbay <name>"
	// Env is the configuration the command reads besides Config; it is
	// loaded before Run and listed by 'patchbay env'.
	Env []EnvSpec
	Run func(ctx context.Context, inv Invocation) error
}

// Invocation is what a Command runs with.
type Invocation struct {
	Log            *slog.Logger
	Config         *Config
	Args           []string // after the command name
	Stdout, Stderr io.Writer
}

// LoadConfig reads the production configuration and each extra spec from
// the environment.
func LoadConfig(extra ...EnvSpec) (*Config, error) {
	c := &Config{}
	for _, s := range append(c.specs(), extra...) {
		if err := envconfig.Process(s.Prefix, s.Spec); err != nil {
			return nil, err
		}
	}
	c.Worker.Stream = c.Ingest.Stream
	c.Worker.AdminAddr = c.admin.AdminAddr
	c.Worker.ContactsBucket = c.Ingest.Ingest.ContactsBucket
	c.Ingest.Admin, c.Worker.Admin = c.Admin, c.Admin
	c.Ingest.Trace, c.Worker.Trace = c.Trace, c.Trace
	return c, nil
}

// NewLogger returns the logger c asks for, writing to w.
func NewLogger(c LogConfig, w io.Writer) (*slog.Logger, error) {
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

const usageHead = `patchbay keeps contacts in sync: webhooks in, provider PATCHes out.

Usage:
`

const usageProduction = `  patchbay ingest                   run the webhook ingest service
  patchbay worker                   run the delivery worker
  patchbay sources check FILE [-sample FILE] [-source NAME] [-content-type T] [-no-secrets]
  patchbay contacts map import FILE.csv | list | get SOURCE TARGET ID | delete SOURCE TARGET ID
  patchbay contacts show [-json] TARGET ID      per field: the value applied, the event that set it, when
  patchbay contacts history [-json] TARGET ID   recent PATCHes: outcome, events merged, events superseded
  patchbay bench [-duration D] [-out FILE] ...   load harness: ingest and worker against floors, on loopback
  patchbay env                      print every environment variable as a Markdown table
`

const usageTail = `
Configuration comes from the environment; see 'patchbay env'.
`

// CLI is the patchbay command line: the production commands plus Commands.
type CLI struct {
	Stdout, Stderr io.Writer
	Commands       []Command
}

func (c CLI) usage() string {
	var b strings.Builder
	b.WriteString(usageHead)
	for _, cmd := range c.Commands {
		b.WriteString(cmd.Usage)
	}
	b.WriteString(usageProduction)
	b.WriteString(usageDLQ)
	b.WriteString(usageOps)
	b.WriteString(usageTail)
	return b.String()
}

// Main runs the command line with args (without the program name), the
// standard streams and SIGINT/SIGTERM handling, and returns the exit code.
func Main(args []string, extra ...Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return CLI{Stdout: os.Stdout, Stderr: os.Stderr, Commands: extra}.Run(ctx, args)
}

// Run runs the command named by args[0] until it ends or ctx is done and
// returns the process exit code: 0, 1 when the command failed, 2 for a
// usage or configuration error.
func (c CLI) Run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(c.Stderr, c.usage())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var extra []EnvSpec
	for _, cmd := range c.Commands {
		extra = append(extra, cmd.Env...)
	}
	cfg, err := LoadConfig(extra...)
	if err != nil {
		fmt.Fprintln(c.Stderr, "patchbay:", err)
		return 2
	}
	log, err := NewLogger(cfg.Log, c.Stderr)
	if err != nil {
		fmt.Fprintln(c.Stderr, "patchbay:", err)
		return 2
	}
	switch args[0] {
	case "ingest":
		err = RunIngest(ctx, log, cfg.Ingest, nil)
	case "worker":
		tuneGC(os.Getenv)
		err = RunWorker(ctx, log, cfg.Worker)
	case "dlq":
		err = runDLQ(ctx, cfg, args[1:], c.Stdout)
	case "sources":
		err = runSources(args[1:], c.Stdout)
	case "contacts":
		err = runContacts(ctx, cfg, args[1:], c.Stdout)
	case "status":
		err = runStatus(ctx, cfg, args[1:], c.Stdout)
	case "targets":
		err = runTargets(ctx, cfg, args[1:], c.Stdout)
	case "healthcheck":
		err = runHealthcheck(ctx, cfg, args[1:], c.Stdout)
	case "env":
		err = PrintEnv(c.Stdout, extra...)
	default:
		found := false
		for _, cmd := range c.Commands {
			if cmd.Name == args[0] {
				found = true
				err = cmd.Run(ctx, Invocation{Log: log, Config: cfg, Args: args[1:], Stdout: c.Stdout, Stderr: c.Stderr})
			}
		}
		if !found {
			fmt.Fprintf(c.Stderr, "patchbay: unknown command %q\n\n%s", args[0], c.usage())
			return 2
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

// PrintEnv writes every environment variable of the production
// configuration and of extra as a Markdown table.
func PrintEnv(w io.Writer, extra ...EnvSpec) error {
	fmt.Fprintln(w, "| Variable | Type | Default | Description |")
	fmt.Fprintln(w, "|---|---|---|---|")
	format := `{{range .}}| {{usage_key .}} | {{usage_type .}} | {{with usage_default .}}{{.}}{{end}} | {{usage_description .}} |
{{end}}`
	for _, s := range append((&Config{}).specs(), extra...) {
		if err := envconfig.Usagef(s.Prefix, s.Spec, w, format); err != nil {
			return err
		}
	}
	return nil
}
