package app

import (
	"bytes"
	"context"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestDLQUsageNamesTheFlags: every flag a dlq command defines is in the
// usage, and every flag the usage lists is defined by some dlq command.
func TestDLQUsageNamesTheFlags(t *testing.T) {
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`-([a-z][a-z-]*)`).FindAllStringSubmatch(usageDLQ, -1) {
		listed[m[1]] = true
	}
	defined := map[string]bool{}
	for _, name := range []string{"list", "show", "replay", "purge"} {
		if !strings.Contains(usageDLQ, "patchbay dlq "+name+" ") {
			t.Errorf("usage does not list dlq %s", name)
		}
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		dlqCommand(name)(fs, time.Now)
		fs.VisitAll(func(f *flag.Flag) {
			defined[f.Name] = true
			if !listed[f.Name] {
				t.Errorf("dlq %s defines -%s, which the usage does not list", name, f.Name)
			}
		})
	}
	for name := range listed {
		if !defined[name] {
			t.Errorf("the usage lists -%s, which no dlq command defines", name)
		}
	}
	if !strings.Contains((CLI{}).usage(), usageDLQ) {
		t.Error("patchbay's usage does not include the dlq commands")
	}
}

// TestDLQCommandsReportSuperseded runs the CLI beside a stack: a newer
// event for a contact is applied, an older one for the same field is in the
// DLQ; 'dlq list' shows it with the DETAIL shape, 'dlq show' its headers,
// and 'dlq replay -dry-run' says its field is superseded and changes nothing.
func TestDLQCommandsReportSuperseded(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	id := "0e0e0e0e-0000-4000-8000-000000000001"
	s.Skipcall.PutContact(id, map[string]any{"firstName": "Old"})
	s.StartWorker(pbtest.WorkerConfig())
	s.PostEvent(map[string]any{"id": "evt-new", "target": "skipcall", "contact_id": id,
		"occurred_at": "2026-11-25T12:00:00Z", "patch": map[string]any{"firstName": "Newer"}})
	pbtest.Eventually(t, 30*time.Second, "the newer event applied", func() bool { return s.Skipcall.PatchCount(id) == 1 })
	pbtest.Eventually(t, 30*time.Second, "the events stream drained", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	err := dlq.NewPublisher(s.JS, "contacts").Publish(context.Background(), dlq.Letter{
		Reason: dlq.ReasonRejected, Status: 400, ErrorCode: "VALIDATION_ERROR", ErrorMessage: "firstName\tis\nnot allowed",
		Attempts: 1, Stream: s.Stream.EventsStream, StreamSeq: 99, Subject: "contacts.patch.skipcall." + id, EventID: "evt-old", Target: "skipcall",
		Data: []byte(`{"id":"evt-old","target":"skipcall","contact_id":"` + id + `","occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":"Older"}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATCHBAY_NATS_URL", s.NATS.ClientURL())
	run := func(args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if code := (CLI{Stdout: &out, Stderr: &errs}).Run(ctx, args); code != 0 {
			t.Fatalf("patchbay %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errs.String())
		}
		t.Logf("patchbay %s\n%s", strings.Join(args, " "), out.String())
		return out.String()
	}
	list := run("dlq", "list")
	if !strings.Contains(list, "HTTP 400 VALIDATION_ERROR: firstName is not allowed") || !strings.Contains(list, "rejected  skipcall  1") {
		t.Fatalf("dlq list: want the summary and the DETAIL shape:\n%s", list)
	}
	show := run("dlq", "show", "1")
	for _, want := range []string{"Patchbay-Status", "Patchbay-Error-Code", "contacts.patch.skipcall." + id, "PATCHBAY_EVENTS seq 99", `"firstName": "Older"`} {
		if !strings.Contains(show, want) {
			t.Fatalf("dlq show: no %q:\n%s", want, show)
		}
	}
	dry := run("dlq", "replay", "-dry-run", "-reason", "rejected")
	if !strings.Contains(dry, "would_replay") || !strings.Contains(dry, "superseded, will be dropped: firstName (by evt-new at 2026-11-25T12:00:00Z)") {
		t.Fatalf("dlq replay -dry-run: want the superseded field named:\n%s", dry)
	}
	if s.StreamMsgs(s.Stream.DLQStream) != 1 || s.StreamMsgs(s.Stream.EventsStream) != 0 {
		t.Fatal("a dry run changed the streams")
	}
	purge := run("dlq", "purge", "-target", "skipcall", "-json")
	if !strings.Contains(purge, `"purged": 1`) || s.StreamMsgs(s.Stream.DLQStream) != 0 {
		t.Fatalf("dlq purge -target skipcall -json:\n%s", purge)
	}
}
