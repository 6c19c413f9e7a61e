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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/sources"
)

// MountSources loads the sources file named by PATCHBAY_INGEST_SOURCES (if
// any), opens the contact map when a source needs it, and serves the
// sources on h.
func MountSources(ctx context.Context, log *slog.Logger, h *ingest.Handler, cfg IngestConfig, js jetstream.JetStream, reg prometheus.Registerer) error {
	if cfg.Ingest.Sources == "" {
		return nil
	}
	set, err := sources.Load(cfg.Ingest.Sources, sources.OSEnv())
	if err != nil {
		return fmt.Errorf("PATCHBAY_INGEST_SOURCES=%s: %w", cfg.Ingest.Sources, err)
	}
	for _, w := range set.Warnings {
		log.Warn(w)
	}
	var contacts ingest.ContactLookup
	if set.LookupContacts() {
		cm, err := sources.OpenContactMap(ctx, js, cfg.Ingest.ContactsBucket, cfg.Stream.Replicas)
		if err != nil {
			return err
		}
		contacts = cm
	}
	if err := h.MountSources(set, contacts, reg); err != nil {
		return err
	}
	log.Info("webhook sources", "sources", set.Names(), "path", "/v1/sources/{name}")
	return nil
}

// runSources runs 'patchbay sources check FILE [-sample FILE]'.
func runSources(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return errors.New("sources: say check FILE [-sample FILE]")
	}
	fs := flag.NewFlagSet("sources check", flag.ContinueOnError)
	sample := fs.String("sample", "", "a sample payload: print the events it maps to, without publishing")
	source := fs.String("source", "", "the source the sample is for (default: the only one)")
	contentType := fs.String("content-type", "application/json", "Content-Type of the sample (application/cloudevents+json, …)")
	noSecrets := fs.Bool("no-secrets", false, "do not read the secrets (check the file where they are not available)")
	file, rest := "", args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		file, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	}
	if file == "" {
		return errors.New("sources check: name the sources file")
	}
	env := sources.OSEnv()
	if *noSecrets {
		fake := "whsec_" + "cGF0Y2hiYXktY2hlY2stbm90LWEtc2VjcmV0"
		env = sources.Env{
			LookupEnv: func(string) (string, bool) { return fake, true },
			ReadFile:  func(string) ([]byte, error) { return []byte(fake), nil },
		}
	}
	set, err := sources.Load(file, env)
	if err != nil {
		return err
	}
	for _, w := range set.Warnings {
		fmt.Fprintln(out, "warning:", w)
	}
	fmt.Fprintf(out, "%s: %d source(s) OK: %s\n", file, len(set.Names()), strings.Join(set.Names(), ", "))
	if *sample == "" {
		return nil
	}
	name := *source
	if name == "" {
		if len(set.Names()) != 1 {
			return errors.New("sources check: several sources; say which with -source")
		}
		name = set.Names()[0]
	}
	src, ok := set.Get(name)
	if !ok {
		return fmt.Errorf("sources check: no source %q", name)
	}
	body, err := os.ReadFile(*sample)
	if err != nil {
		return err
	}
	return checkSample(src, body, *contentType, out)
}

// checkSample maps and validates body as ingest would, and prints each
// event (contact ids still the source's for a lookup source).
func checkSample(src *sources.Source, body []byte, contentType string, out io.Writer) error {
	req := &sources.Request{Method: http.MethodPost, URI: "/v1/sources/" + src.Name, Header: http.Header{"Content-Type": {contentType}}, Body: body, Now: time.Now()}
	lim := events.Limits{}
	ms, err := src.Map(req, lim)
	if err == nil {
		for i := range ms {
			ms[i].Unmapped = src.LookupContacts()
		}
		err = src.Validate(ms, lim)
	}
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			fmt.Fprintf(out, "item %d: %s: %s\n", fe.Index, fe.Field, fe.Reason)
		}
		return fmt.Errorf("sources check: the sample maps to nothing valid (422: %d problem(s))", len(ve.Errors))
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for _, m := range ms {
		line := map[string]any{"item": m.Item, "subject": m.Event.Subject("contacts"), "event": json.RawMessage(mustMarshal(m.Event))}
		if m.Unmapped {
			line["subject"] = "(after contact lookup)"
			line["contact_lookup"] = map[string]string{"source": src.Name, "target": string(m.Event.Target), "source_id": m.SourceContactID}
			var ev map[string]any
			_ = json.Unmarshal(mustMarshal(m.Event), &ev)
			ev["contact_id"] = "<looked up>"
			line["event"] = ev
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

func mustMarshal(e events.Event) []byte {
	b, err := e.Marshal()
	if err != nil {
		return []byte("null")
	}
	return b
}

// runContacts runs 'patchbay contacts map import FILE.csv|list|get|delete'.
func runContacts(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	if len(args) > 0 && contactsViewCommand(args[0]) != nil {
		return runContactsView(ctx, cfg, args, out)
	}
	if len(args) < 2 || args[0] != "map" {
		return errors.New("contacts: say map import FILE.csv | map list | map get SOURCE TARGET SOURCE_ID | map delete SOURCE TARGET SOURCE_ID | show [-json] TARGET ID | history [-json] TARGET ID")
	}
	scfg := cfg.Ingest.Stream
	nc, js, err := Connect(ctx, slog.New(slog.DiscardHandler), scfg, "patchbay-contacts")
	if err != nil {
		return err
	}
	defer nc.Close()
	cm, err := sources.OpenContactMap(ctx, js, cfg.Ingest.Ingest.ContactsBucket, scfg.Replicas)
	if err != nil {
		return err
	}
	return contactsCommand(ctx, cm, args[1:], out)
}

// contactsCommand runs one contact map subcommand on cm.
func contactsCommand(ctx context.Context, cm *sources.ContactMap, args []string, out io.Writer) error {
	key := func() (string, events.Target, string, error) {
		if len(args) != 4 {
			return "", "", "", fmt.Errorf("contacts map %s: say SOURCE TARGET SOURCE_ID", args[0])
		}
		return args[1], events.Target(args[2]), args[3], nil
	}
	switch args[0] {
	case "import":
		if len(args) != 2 {
			return errors.New("contacts map import: say FILE.csv (rows: source,target,source_id,provider_id)")
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := cm.ImportCSV(ctx, f)
		if err != nil {
			return fmt.Errorf("%s: %w", args[1], err)
		}
		fmt.Fprintf(out, "imported %d mapping(s)\n", n)
		return nil
	case "list":
		list, err := cm.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tTARGET\tSOURCE ID\tPROVIDER ID")
		for _, c := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Source, c.Target, c.SourceID, c.ProviderID)
		}
		return tw.Flush()
	case "get":
		s, t, id, err := key()
		if err != nil {
			return err
		}
		pid, err := cm.Get(ctx, s, t, id)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, pid)
		return nil
	case "delete":
		s, t, id, err := key()
		if err != nil {
			return err
		}
		if err := cm.Delete(ctx, s, t, id); err != nil {
			return err
		}
		fmt.Fprintln(out, "deleted")
		return nil
	}
	return fmt.Errorf("contacts map: unknown command %q", args[0])
}
