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
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/lww"
	"github.com/patchbay/patchbay/sources"
	"github.com/patchbay/patchbay/stream"
)

// usageDLQ lists the dlq commands and their flags; dlqFlags defines the
// same names (a test checks that they agree).
const usageDLQ = `  patchbay dlq list [FILTER] [-before SEQ] [-limit N] [-json]   summary by reason and target, then letters newest first
  patchbay dlq show [-json] SEQ     one letter: every header, original subject and sequence, payload
  patchbay dlq replay [FILTER | -all | SEQ...] [-rate N] [-dry-run] [-edit FILE] [-json]
  patchbay dlq purge [FILTER | -all | SEQ...] [-dry-run] [-json]
      FILTER: -target T -contact ID -reason R -status N -code C -since T -until T -older-than D
`

// dlqFilterFlags adds the filter flags to fs and returns a function that
// reads them into a Filter once fs is parsed.
func dlqFilterFlags(fs *flag.FlagSet, now func() time.Time) func() (dlq.Filter, error) {
	target := fs.String("target", "", "only letters for this target (revyops, skipcall)")
	contact := fs.String("contact", "", "only letters for this contact id at the target")
	reason := fs.String("reason", "", "only letters dead-lettered for this reason (rejected, retries_exhausted, invalid, unmapped, max_deliveries)")
	status := fs.Int("status", 0, "only letters whose provider answered this HTTP status")
	code := fs.String("code", "", "only letters with this provider error code")
	since := fs.String("since", "", "only letters dead-lettered at or after this time (RFC 3339, or a duration ago such as 2h)")
	until := fs.String("until", "", "only letters dead-lettered before this time (RFC 3339, or a duration ago)")
	olderThan := fs.Duration("older-than", 0, "only letters dead-lettered more than this long ago (sets -until)")
	return func() (dlq.Filter, error) {
		f := dlq.Filter{Target: *target, ContactID: *contact, Reason: dlq.Reason(*reason), Status: *status, ErrorCode: *code}
		var err error
		if f.Since, err = parseWhen(*since, now); err != nil {
			return f, fmt.Errorf("-since: %w", err)
		}
		if f.Until, err = parseWhen(*until, now); err != nil {
			return f, fmt.Errorf("-until: %w", err)
		}
		if *olderThan > 0 {
			f.Until = now().Add(-*olderThan)
		}
		return f, f.Validate()
	}
}

// parseWhen reads an RFC 3339 time or a duration before now; "" is the
// zero time.
func parseWhen(s string, now func() time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return now().Add(-d), nil
}

// parseSeqs reads DLQ sequence numbers.
func parseSeqs(args []string) ([]uint64, error) {
	var seqs []uint64
	for _, a := range args {
		seq, err := strconv.ParseUint(a, 10, 64)
		if err != nil || seq == 0 {
			return nil, fmt.Errorf("%q is not a sequence number", a)
		}
		seqs = append(seqs, seq)
	}
	return seqs, nil
}

// NewDLQStore returns the dead-letter store of scfg's streams on js, which
// looks unmapped letters up in the contact map in contactsBucket and reports
// superseded fields from the worker's per-field clocks.
func NewDLQStore(js jetstream.JetStream, scfg stream.Config, contactsBucket string) *dlq.Store {
	store := dlq.NewStore(js, scfg.DLQStream, scfg.SubjectPrefix)
	store.SetResolver(&sources.Resolver{
		Prefix: scfg.SubjectPrefix,
		Open: func(ctx context.Context) (*sources.ContactMap, error) {
			return sources.OpenContactMap(ctx, js, contactsBucket, scfg.Replicas)
		},
	})
	store.SetClocks(&stateClocks{js: js, bucket: scfg.KVBucket("STATE")})
	return store
}

// stateClocks reads the worker's per-field clocks (processor/lww) to tell
// a replay which fields a newer applied value has superseded. The bucket is
// opened on first use with its own settings, so that reading it never
// changes it; before any worker has created it, nothing is superseded.
type stateClocks struct {
	js     jetstream.JetStream
	bucket string
	mu     sync.Mutex
	store  *lww.Store
}

// open returns the lww store over the existing bucket; nil if none yet.
func (c *stateClocks) open(ctx context.Context) (*lww.Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store != nil {
		return c.store, nil
	}
	kv, err := c.js.KeyValue(ctx, c.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state bucket %s: %w", c.bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("state bucket %s: %w", c.bucket, err)
	}
	cfg := lww.StoreConfig{Bucket: c.bucket, TTL: st.TTL(), Replicas: 1}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		cfg.Replicas = bs.StreamInfo().Config.Replicas
	}
	if c.store, err = lww.NewStore(ctx, c.js, cfg); err != nil {
		return nil, err
	}
	return c.store, nil
}

// Superseded returns the fields of ev whose applied clock is at least as
// new as ev's: the worker drops them (see lww.Filter).
func (c *stateClocks) Superseded(ctx context.Context, ev *events.Event) ([]dlq.Superseded, error) {
	store, err := c.open(ctx)
	if store == nil || err != nil {
		return nil, err
	}
	fields, err := lww.Fields(ev.Target, ev.Patch)
	if err != nil {
		return nil, err
	}
	st, err := store.Get(ctx, ev.Target, ev.ContactID)
	if err != nil {
		return nil, err
	}
	own := lww.ClockOf(ev)
	var out []dlq.Superseded
	for _, f := range fields {
		if stored, ok := st.Fields[f]; ok && !own.After(stored) {
			out = append(out, dlq.Superseded{Field: f, EventID: stored.ID, At: stored.At})
		}
	}
	return out, nil
}

// runDLQ runs 'patchbay dlq list|show|replay|purge'.
func runDLQ(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("dlq: say list, show, replay or purge\n%s", usageDLQ)
	}
	cmd := dlqCommand(args[0])
	if cmd == nil {
		return fmt.Errorf("dlq: unknown command %q\n%s", args[0], usageDLQ)
	}
	fs := flag.NewFlagSet("dlq "+args[0], flag.ContinueOnError)
	fs.SetOutput(out)
	run := cmd(fs, time.Now)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	nc, js, err := Connect(ctx, slog.New(slog.DiscardHandler), cfg.Ingest.Stream, "patchbay-dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	return run(ctx, NewDLQStore(js, cfg.Ingest.Stream, cfg.Ingest.Ingest.ContactsBucket), fs.Args(), out)
}

// dlqRun runs one dlq command once its flags are parsed.
type dlqRun func(ctx context.Context, store *dlq.Store, args []string, out io.Writer) error

// dlqCommand returns the function that defines the named dlq command's
// flags on fs and returns its run; nil for an unknown name.
func dlqCommand(name string) func(fs *flag.FlagSet, now func() time.Time) dlqRun {
	switch name {
	case "list":
		return dlqList
	case "show":
		return dlqShow
	case "replay":
		return dlqReplay
	case "purge":
		return dlqPurge
	}
	return nil
}

func dlqList(fs *flag.FlagSet, now func() time.Time) dlqRun {
	filter := dlqFilterFlags(fs, now)
	before := fs.Uint64("before", 0, "list letters below this sequence (the 'next' of the previous page)")
	limit := fs.Int("limit", dlq.DefaultLimit, fmt.Sprintf("most letters to list (at most %d)", dlq.MaxLimit))
	asJSON := fs.Bool("json", false, "print one JSON object: summary, letters with payloads, next")
	return func(ctx context.Context, store *dlq.Store, args []string, out io.Writer) error {
		if len(args) > 0 {
			return fmt.Errorf("dlq list: unexpected %q (filters are flags)", args[0])
		}
		f, err := filter()
		if err != nil {
			return err
		}
		sum, err := store.Summary(ctx, f)
		if err != nil {
			return err
		}
		page, err := store.List(ctx, f, dlq.Page{Before: *before, Limit: *limit})
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(out, struct {
				Summary dlq.Summary  `json:"summary"`
				Letters []dlq.Letter `json:"letters"`
				Next    uint64       `json:"next,omitempty"`
			}{sum, page.Letters, page.Next})
		}
		printSummary(out, sum)
		if len(page.Letters) == 0 {
			return nil
		}
		fmt.Fprintln(out)
		if err := printLetters(out, page.Letters); err != nil {
			return err
		}
		if page.Next != 0 {
			fmt.Fprintf(out, "\nmore: patchbay dlq list -before %d ...\n", page.Next)
		}
		return nil
	}
}

func dlqShow(fs *flag.FlagSet, _ func() time.Time) dlqRun {
	asJSON := fs.Bool("json", false, "print the letter as JSON")
	return func(ctx context.Context, store *dlq.Store, args []string, out io.Writer) error {
		seqs, err := parseSeqs(args)
		if err != nil || len(seqs) != 1 {
			return fmt.Errorf("dlq show: say one SEQ (%v)", err)
		}
		l, err := store.Show(ctx, seqs[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(out, l)
		}
		return printLetter(out, l)
	}
}

func dlqReplay(fs *flag.FlagSet, now func() time.Time) dlqRun {
	filter := dlqFilterFlags(fs, now)
	all := fs.Bool("all", false, "replay every letter")
	rateCap := fs.Float64("rate", 10, "most letters replayed per second (0: no cap)")
	dryRun := fs.Bool("dry-run", false, "list what would be replayed, and the fields already superseded, without replaying")
	edit := fs.String("edit", "", "file with a corrected event replacing the letter's payload (one SEQ only)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context, store *dlq.Store, args []string, out io.Writer) error {
		sel, err := selection(args, filter, *all)
		if err != nil {
			return fmt.Errorf("dlq replay: %w", err)
		}
		opts := dlq.ReplayOptions{RateCap: *rateCap, DryRun: *dryRun}
		if *edit != "" {
			if opts.Edit, err = os.ReadFile(*edit); err != nil {
				return err
			}
		}
		if !*asJSON {
			// Rows are printed as each letter is done (a capped replay of
			// many letters takes a while), so the columns are fixed.
			const row = "%-8v  %-12s  %-8s  %-36s  %-24s  %s\n"
			head := false
			opts.Progress = func(r dlq.ReplayResult) {
				if !head {
					fmt.Fprintf(out, row, "SEQ", "OUTCOME", "TARGET", "CONTACT", "EVENT ID", "NOTE")
					head = true
				}
				fmt.Fprintf(out, row, r.Seq, r.Outcome, orDash(r.Target), orDash(r.ContactID), orDash(r.EventID), replayNote(r))
			}
		}
		rep, err := store.Replay(ctx, sel, opts)
		var verr *events.ValidationError
		if errors.As(err, &verr) {
			return fmt.Errorf("dlq replay: %s is not a valid event: %w", *edit, verr)
		}
		if *asJSON {
			if jerr := writeJSON(out, rep); jerr != nil {
				return jerr
			}
			return err
		}
		verb := "replayed"
		if rep.DryRun {
			verb = "would replay"
		}
		fmt.Fprintf(out, "%s %d, failed %d\n", verb, rep.Replayed, rep.Failed)
		if err == nil && rep.Failed > 0 {
			err = fmt.Errorf("dlq replay: %d letter(s) not replayed (see NOTE)", rep.Failed)
		}
		return err
	}
}

// replayNote is the NOTE column of a replay row: the error, or the fields
// the worker will drop as superseded.
func replayNote(r dlq.ReplayResult) string {
	if r.Error != "" {
		return oneLine(r.Error)
	}
	if len(r.Superseded) == 0 {
		return ""
	}
	parts := make([]string, len(r.Superseded))
	for i, s := range r.Superseded {
		parts[i] = fmt.Sprintf("%s (by %s at %s)", s.Field, s.EventID, s.At.UTC().Format(time.RFC3339))
	}
	return "superseded, will be dropped: " + strings.Join(parts, ", ")
}

func dlqPurge(fs *flag.FlagSet, now func() time.Time) dlqRun {
	filter := dlqFilterFlags(fs, now)
	all := fs.Bool("all", false, "purge every letter")
	dryRun := fs.Bool("dry-run", false, "count what would be purged without deleting")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context, store *dlq.Store, args []string, out io.Writer) error {
		sel, err := selection(args, filter, *all)
		if err != nil {
			return fmt.Errorf("dlq purge: %w", err)
		}
		rep, err := store.Purge(ctx, sel, dlq.PurgeOptions{DryRun: *dryRun})
		if *asJSON {
			if jerr := writeJSON(out, rep); jerr != nil {
				return jerr
			}
			return err
		}
		verb := "purged"
		if rep.DryRun {
			verb = "would purge"
		}
		fmt.Fprintf(out, "%s %d\n", verb, rep.Purged)
		return err
	}
}

// selection makes the Selection of a replay or purge: SEQs, or the filter,
// or -all, exactly one of them.
func selection(args []string, filter func() (dlq.Filter, error), all bool) (dlq.Selection, error) {
	seqs, err := parseSeqs(args)
	if err != nil {
		return dlq.Selection{}, err
	}
	f, err := filter()
	if err != nil {
		return dlq.Selection{}, err
	}
	switch n := btoi(len(seqs) > 0) + btoi(!f.IsZero()) + btoi(all); {
	case n == 0:
		return dlq.Selection{}, errors.New("say which letters: SEQ..., filter flags, or -all")
	case n > 1:
		return dlq.Selection{}, errors.New("give SEQ..., filter flags or -all, not several")
	}
	return dlq.Selection{Seqs: seqs, Filter: f, All: all}, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printSummary(out io.Writer, s dlq.Summary) {
	if s.Total == 0 {
		fmt.Fprintln(out, "no dead letters")
		return
	}
	fmt.Fprintf(out, "%d dead letter(s), %s to %s\n", s.Total, s.Oldest.UTC().Format(time.RFC3339), s.Newest.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tTARGET\tCOUNT")
	for _, c := range s.Counts {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", c.Reason, c.Target, c.Count)
	}
	_ = tw.Flush()
}

func printLetters(out io.Writer, letters []dlq.Letter) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD AT\tREASON\tSTATUS\tATTEMPTS\tTARGET\tCONTACT\tEVENT ID\tDETAIL")
	for _, l := range letters {
		detail := l.Explain()
		if r := []rune(detail); len(r) > 80 {
			detail = string(r[:77]) + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", l.DLQSeq, l.DeadAt.UTC().Format(time.RFC3339), l.Reason,
			dash(l.Status), l.Attempts, l.Target, orDash(l.ContactID()), l.EventID, detail)
	}
	return tw.Flush()
}

func printLetter(out io.Writer, l dlq.Letter) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("Sequence", l.DLQSeq)
	row("Dead-lettered at", l.DeadAt.UTC().Format(time.RFC3339Nano))
	row("Reason", l.Reason)
	row("Detail", l.Explain())
	row("Target", l.Target)
	row("Contact", orDash(l.ContactID()))
	row("Event id", l.EventID)
	row("Original subject", l.Subject)
	row("Original stream", fmt.Sprintf("%s seq %d", orDash(l.Stream), l.StreamSeq))
	row("Attempts", l.Attempts)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nHeaders:")
	keys := make([]string, 0, len(l.Headers))
	for k := range l.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%s\n", k, l.Headers[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nPayload:")
	if json.Valid(l.Data) {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetIndent("  ", "  ")
		if err := enc.Encode(json.RawMessage(l.Data)); err == nil {
			fmt.Fprint(out, "  "+b.String())
			return nil
		}
	}
	fmt.Fprintf(out, "  %q\n", l.Data)
	return nil
}

func dash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
