package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/history"
)

// contactsRun runs one of 'patchbay contacts show|history' once its flags
// are parsed, on a viewer of the worker's state and history.
type contactsRun func(ctx context.Context, v *history.Viewer, args []string, out io.Writer) error

// contactsViewCommand returns the function that defines the named contact
// view command's flags on fs; nil for another name.
func contactsViewCommand(name string) func(fs *flag.FlagSet) contactsRun {
	switch name {
	case "show":
		return contactsShow
	case "history":
		return contactsHistory
	}
	return nil
}

// runContactsView runs 'patchbay contacts show|history TARGET ID'.
func runContactsView(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	cmd := contactsViewCommand(args[0])
	fs := flag.NewFlagSet("contacts "+args[0], flag.ContinueOnError)
	fs.SetOutput(out)
	run := cmd(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	nc, js, err := Connect(ctx, slog.New(slog.DiscardHandler), cfg.Ingest.Stream, "patchbay-contacts")
	if err != nil {
		return err
	}
	defer nc.Close()
	return run(ctx, history.NewViewer(js, cfg.Ingest.Stream), fs.Args(), out)
}

// contactArgs reads TARGET ID.
func contactArgs(cmd string, args []string) (events.Target, string, error) {
	if len(args) != 2 {
		return "", "", fmt.Errorf("contacts %s: say TARGET ID (target: revyops or skipcall)", cmd)
	}
	return events.Target(args[0]), args[1], nil
}

func contactsShow(fs *flag.FlagSet) contactsRun {
	asJSON := fs.Bool("json", false, "print the contact as JSON (values included)")
	return func(ctx context.Context, v *history.Viewer, args []string, out io.Writer) error {
		t, id, err := contactArgs("show", args)
		if err != nil {
			return err
		}
		c, err := v.Contact(ctx, t, id)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(out, struct {
				Target  events.Target   `json:"target"`
				Contact string          `json:"contact"`
				Fields  []history.Field `json:"fields"`
				Notes   []string        `json:"notes,omitempty"`
			}{c.Target, c.Contact, c.Fields, c.Notes})
		}
		printNotes(out, c.Notes)
		if len(c.Fields) == 0 {
			fmt.Fprintf(out, "no applied fields for %s %s (never applied, or older than PATCHBAY_WORKER_STATE_TTL)\n", t, id)
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FIELD\tVALUE\tEVENT ID\tSOURCE\tOCCURRED AT\tAPPLIED\tREPAIR")
		for _, f := range c.Fields {
			val := "(not kept)"
			if f.Value != nil {
				val = clip(string(f.Value), 40)
			}
			repair := "-"
			if f.Pending {
				repair = "pending"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, val, f.Set.EventID, orDash(f.Set.Source),
				stamp(f.Set.OccurredAt), stamp(f.Applied), repair)
		}
		return tw.Flush()
	}
}

func contactsHistory(fs *flag.FlagSet) contactsRun {
	asJSON := fs.Bool("json", false, "print the records as JSON")
	return func(ctx context.Context, v *history.Viewer, args []string, out io.Writer) error {
		t, id, err := contactArgs("history", args)
		if err != nil {
			return err
		}
		hs, err := v.History(ctx, t, id)
		if errors.Is(err, history.ErrNoStream) {
			if *asJSON {
				return writeJSON(out, []history.Record{})
			}
			fmt.Fprintln(out, "no history stream: the workers keep no history (PATCHBAY_WORKER_HISTORY_MAX_AGE=0) or none has run")
			return nil
		}
		if err != nil {
			return err
		}
		if *asJSON {
			if hs == nil {
				hs = []history.Record{}
			}
			return writeJSON(out, hs)
		}
		if len(hs) == 0 {
			fmt.Fprintf(out, "no deliveries recorded for %s %s\n", t, id)
			return nil
		}
		printHistory(out, hs)
		return nil
	}
}

// printHistory prints records newest first: one row per delivery, and one
// more row for each further field dropped as superseded.
func printHistory(out io.Writer, hs []history.Record) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tOUTCOME\tSTATUS\tFIELDS SENT\tEVENTS MERGED\tSUPERSEDED (EVENT FIELD < CLOCK THAT BEAT IT)")
	for i := len(hs) - 1; i >= 0; i-- {
		r := hs[i]
		status := "-"
		if r.Status != 0 {
			status = fmt.Sprint(r.Status)
		}
		evs := make([]string, len(r.Events))
		for j, e := range r.Events {
			evs[j] = clockText(e.Clock)
		}
		fields := orDash(strings.Join(r.Fields, ","))
		if len(r.Repaired) > 0 {
			fields += " (repair: " + strings.Join(r.Repaired, ",") + ")"
		}
		dropped := make([]string, len(r.Dropped))
		for j, d := range r.Dropped {
			by := "stored"
			if !d.Stored {
				by = "merged"
			}
			dropped[j] = fmt.Sprintf("%s %s < %s %s", d.EventID, d.Field, by, clockText(d.By))
		}
		first := "-"
		if len(dropped) > 0 {
			first = dropped[0]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", stamp(r.At), r.Outcome, status, fields, strings.Join(evs, " "), first)
		for j := 1; j < len(dropped); j++ {
			fmt.Fprintf(tw, "\t\t\t\t\t%s\n", dropped[j])
		}
	}
	_ = tw.Flush()
}

// clockText shows a clock as "ID@OCCURRED_AT(SOURCE)".
func clockText(c history.Clock) string {
	s := c.EventID + "@" + stamp(c.OccurredAt)
	if c.Source != "" {
		s += "(" + c.Source + ")"
	}
	return s
}

func printNotes(out io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(out, "note:", n)
	}
}

// stamp shows t in UTC to the millisecond; "-" for the zero time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// clip shortens s to at most n runes.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
