package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/patchbay/patchbay/processor/ratelimit"
)

// usageOps lists the operator commands of this file, in the CLI's usage.
const usageOps = `  patchbay status [-json]           streams, each target's state and consumer lag, dead letters by reason
  patchbay targets pause TARGET [-by NAME] [-reason TEXT]   stop deliveries to TARGET on every worker until resumed
  patchbay targets resume TARGET    deliver to TARGET again
  patchbay healthcheck URL          GET URL, exit 0 on a 2xx answer (container health checks; /ingest and /worker take it too)
`

// statusTimeout bounds 'patchbay status' (the dead-letter count stops
// there and says so).
const statusTimeout = 10 * time.Second

// runStatus is 'patchbay status'.
func runStatus(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("status: %w (usage: patchbay status [-json])", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("status: unexpected %q (usage: patchbay status [-json])", fs.Arg(0))
	}
	scfg := cfg.Ingest.Stream
	nc, js, err := Connect(ctx, slog.New(slog.DiscardHandler), scfg, "patchbay-status")
	if err != nil {
		return err
	}
	defer nc.Close()
	sctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	r, err := Status(sctx, js, scfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return printStatus(out, r)
}

// printStatus writes r as tables.
func printStatus(out io.Writer, r StatusReport) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tBYTES\tREPLICAS\tCONSUMERS")
	for _, s := range r.Streams {
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t(%s)\n", s.Name, s.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", s.Name, s.Messages, s.Bytes, s.Replicas, s.Consumers)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "TARGET\tPENDING\tACK PENDING\tREDELIVERED\tSTATE")
	var paused []string
	for _, t := range r.Targets {
		detail := t.Detail
		if t.Error != "" {
			detail += " (" + t.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", t.Target, t.Pending, t.AckPending, t.Redelivered, detail)
		for _, b := range t.Budgets {
			if b.Kind == "manual" {
				paused = append(paused, t.Target)
				break
			}
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "DEAD LETTERS\tREASON\tCOUNT")
	total := 0
	for _, c := range r.DeadLetters {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", c.Target, c.Reason, c.Count)
		total += c.Count
	}
	more := ""
	if !r.DeadLettersScanned {
		more = " (counting stopped early: at least this many)"
	}
	fmt.Fprintf(tw, "total\t\t%d%s\n", total, more)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range paused {
		fmt.Fprintf(out, "\n%s is paused by hand; resume it with: patchbay targets resume %s\n", t, t)
	}
	if total > 0 {
		fmt.Fprintln(out, "\nList the dead letters with: patchbay dlq list")
	}
	return nil
}

// targetsFlags defines the flags of 'targets pause|resume' on fs.
func targetsFlags(fs *flag.FlagSet) (by, reason *string) {
	by = fs.String("by", operatorName(), "who pauses (shown by status)")
	reason = fs.String("reason", "", "why (shown by status)")
	return by, reason
}

// runTargets is 'patchbay targets pause|resume TARGET'.
func runTargets(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	const usage = "usage: patchbay targets pause TARGET [-by NAME] [-reason TEXT] | patchbay targets resume TARGET"
	if len(args) < 2 || args[0] != "pause" && args[0] != "resume" {
		return errors.New("targets: " + usage)
	}
	verb, target := args[0], args[1]
	fs := flag.NewFlagSet("targets "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	by, reason := targetsFlags(fs)
	if err := fs.Parse(args[2:]); err != nil {
		return fmt.Errorf("targets %s: %w (%s)", verb, err, usage)
	}
	if fs.NArg() > 0 || verb == "resume" && (*reason != "") {
		return errors.New("targets: " + usage)
	}
	scfg := cfg.Ingest.Stream
	nc, js, err := Connect(ctx, slog.New(slog.DiscardHandler), scfg, "patchbay-targets")
	if err != nil {
		return err
	}
	defer nc.Close()
	op, err := ratelimit.NewOperator(ctx, js, scfg.KVBucket("RATE"))
	if err != nil {
		return fmt.Errorf("targets %s %s: %w", verb, target, err)
	}
	if verb == "pause" {
		n, err := op.Pause(ctx, target, *by, *reason)
		if err != nil {
			return fmt.Errorf("targets pause %s: %w", target, err)
		}
		if n == 0 {
			fmt.Fprintf(out, "%s was already paused by hand (patchbay status says by whom)\n", target)
			return nil
		}
		fmt.Fprintf(out, "paused %s on every worker (by %s); its events wait in NATS. Resume with: patchbay targets resume %s\n", target, *by, target)
		return nil
	}
	n, err := op.Resume(ctx, target)
	if err != nil {
		return fmt.Errorf("targets resume %s: %w", target, err)
	}
	if n == 0 {
		fmt.Fprintf(out, "%s was not paused by hand; nothing to resume\n", target)
		return nil
	}
	fmt.Fprintf(out, "resumed %s on every worker\n", target)
	return nil
}

// operatorName is who a pause is recorded as made by when -by is not
// given: the user and the host.
func operatorName() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return strings.Trim(name+"@"+host, "@")
}

// runHealthcheck is 'patchbay healthcheck URL', the container health
// check of images without a shell: it GETs URL (with PATCHBAY_ADMIN_TOKEN
// as bearer token when set) and fails unless the answer is 2xx.
func runHealthcheck(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: patchbay healthcheck URL")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	if tok := cfg.Admin.Token.Reveal(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("healthcheck: %s answered %s", args[0], resp.Status)
	}
	fmt.Fprintln(out, "healthy")
	return nil
}
