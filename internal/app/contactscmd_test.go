package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/history"
)

// lockedBuffer is a bytes.Buffer safe for the worker's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestContactsShowAndHistoryNameTheEvents: three events to one contact
// through ingest and a real worker, the last posted older than the second
// (for one of its two fields). 'contacts show' names, per field, the event
// whose value stands, with its source; 'contacts history' lists the older
// event's field as superseded with the stored clock that beat it; the
// worker's log (at debug) holds none of the values.
func TestContactsShowAndHistoryNameTheEvents(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	id := "0e0e0e0e-0000-4000-8000-00000000c0de"
	s.Skipcall.PutContact(id, map[string]any{"firstName": "Before-v4lue"})
	var logs lockedBuffer
	cfg := pbtest.WorkerConfig()
	cfg.HistoryMaxAge, cfg.HistoryPerContact = time.Hour, 50
	w, err := processor.New(cfg, processor.Deps{JS: s.JS, Conn: s.NC, Stream: s.Stream, Targets: s.Targets(cfg, 2*time.Second),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	post := func(ev, at string, patch map[string]any, patches int) {
		t.Helper()
		s.PostEvent(map[string]any{"id": ev, "target": "skipcall", "contact_id": id, "occurred_at": at, "patch": patch})
		pbtest.Eventually(t, 30*time.Second, ev+" delivered", func() bool { return s.Skipcall.PatchCount(id) == patches })
	}
	post("evt-1", "2026-11-25T10:00:00Z", map[string]any{"firstName": "Ada-v4lue", "city": "Paris-v4lue"}, 1)
	post("evt-3", "2026-11-25T10:02:00Z", map[string]any{"firstName": "Grace-v4lue"}, 2)
	// Older than evt-3 for firstName, newer than evt-1 for city: city is
	// sent, firstName dropped.
	post("evt-2", "2026-11-25T10:01:00Z", map[string]any{"firstName": "Lin-v4lue", "city": "Lyon-v4lue"}, 3)

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

	// The state is committed before the events are acknowledged, so it is
	// complete once the stream is empty.
	pbtest.Eventually(t, 30*time.Second, "the events stream drained", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	var shown struct {
		Fields []history.Field `json:"fields"`
	}
	if err := json.Unmarshal([]byte(run("contacts", "show", "-json", "skipcall", id)), &shown); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ event, value, at string }{
		"firstName": {"evt-3", `"Grace-v4lue"`, "2026-11-25T10:02:00Z"},
		"city":      {"evt-2", `"Lyon-v4lue"`, "2026-11-25T10:01:00Z"},
	}
	if len(shown.Fields) != len(want) {
		t.Fatalf("contacts show: %d fields, want %d: %+v", len(shown.Fields), len(want), shown.Fields)
	}
	for _, f := range shown.Fields {
		wf := want[f.Name]
		if f.Set.EventID != wf.event || string(f.Value) != wf.value || f.Set.OccurredAt.Format(time.RFC3339) != wf.at ||
			f.Set.Source != "api" || f.Applied.IsZero() || f.Pending {
			t.Errorf("contacts show: %s = %+v (value %s), want set by %s at %s from api, value %s, applied", f.Name, f.Set, f.Value, wf.event, wf.at, wf.value)
		}
	}
	text := run("contacts", "show", "skipcall", id)
	if !strings.Contains(text, `firstName  "Grace-v4lue"  evt-3     api     2026-11-25T10:02:00.000Z`) {
		t.Errorf("contacts show: firstName's row does not name evt-3:\n%s", text)
	}

	// History records are published without waiting for JetStream: polled.
	var recs []history.Record
	pbtest.Eventually(t, 30*time.Second, "three history records", func() bool {
		var out, errs bytes.Buffer
		if (CLI{Stdout: &out, Stderr: &errs}).Run(context.Background(), []string{"contacts", "history", "-json", "skipcall", id}) != 0 {
			t.Fatalf("contacts history: %s", errs.String())
		}
		recs = nil
		return json.Unmarshal(out.Bytes(), &recs) == nil && len(recs) == 3
	})
	last := recs[2]
	if last.Outcome != history.OutcomeApplied || last.Status != 200 || len(last.Events) != 1 || last.Events[0].EventID != "evt-2" ||
		strings.Join(last.Fields, ",") != "city" {
		t.Fatalf("contacts history: the last delivery is %+v, want evt-2 applied (200) with city only", last)
	}
	if len(last.Dropped) != 1 {
		t.Fatalf("contacts history: dropped %+v, want evt-2's firstName", last.Dropped)
	}
	d := last.Dropped[0]
	if d.EventID != "evt-2" || d.Field != "firstName" || !d.Stored || d.By.EventID != "evt-3" ||
		d.By.OccurredAt.Format(time.RFC3339) != "2026-11-25T10:02:00Z" || d.By.Source != "api" {
		t.Fatalf("contacts history: dropped %+v, want evt-2 firstName beaten by the stored clock of evt-3 at 10:02 (api)", d)
	}
	text = run("contacts", "history", "skipcall", id)
	if !strings.Contains(text, "evt-2 firstName < stored evt-3@2026-11-25T10:02:00.000Z(api)") {
		t.Errorf("contacts history: the superseded field and the clock that beat it are not printed:\n%s", text)
	}

	// The values are personal data: not in the worker's log, not in the
	// history records.
	raw := run("contacts", "history", "-json", "skipcall", id)
	for _, v := range []string{"Ada-v4lue", "Paris-v4lue", "Grace-v4lue", "Lin-v4lue", "Lyon-v4lue"} {
		if strings.Contains(logs.String(), v) {
			t.Errorf("the worker logged the value %q", v)
		}
		if strings.Contains(raw, v) {
			t.Errorf("a history record holds the value %q", v)
		}
	}
	if !strings.Contains(logs.String(), "evt-2") {
		t.Fatalf("the worker's debug log is empty of the events: the check above saw nothing\n%s", logs.String())
	}
}

// TestContactsHistoryNamesTheMergedEventThatWon: two events of one
// contact queued before the worker starts are merged into one PATCH; the
// history names the older event's field as superseded by the newer event
// merged with it.
func TestContactsHistoryNamesTheMergedEventThatWon(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	id := "0e0e0e0e-0000-4000-8000-00000000c0df"
	s.Skipcall.PutContact(id, map[string]any{"firstName": "Before"})
	body, _ := json.Marshal([]map[string]any{
		{"id": "evt-a", "target": "skipcall", "contact_id": id, "occurred_at": "2026-11-25T10:00:00Z", "patch": map[string]any{"firstName": "A", "city": "X"}},
		{"id": "evt-b", "target": "skipcall", "contact_id": id, "occurred_at": "2026-11-25T10:05:00Z", "patch": map[string]any{"firstName": "B"}},
	})
	if code, resp := s.Post(body, nil); code != 202 {
		t.Fatalf("POST: %d %s", code, resp)
	}
	cfg := pbtest.WorkerConfig()
	cfg.HistoryMaxAge, cfg.HistoryPerContact = time.Hour, 50
	s.StartWorker(cfg)
	pbtest.Eventually(t, 30*time.Second, "the events stream drained", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	v := history.NewViewer(s.JS, s.Stream)
	var recs []history.Record
	pbtest.Eventually(t, 30*time.Second, "the history record", func() bool {
		var err error
		recs, err = v.History(context.Background(), "skipcall", id)
		return err == nil && len(recs) > 0
	})
	if len(recs) != 1 || len(recs[0].Events) != 2 {
		t.Skipf("the worker did not merge the two events into one PATCH (%d records); nothing to check", len(recs))
	}
	r := recs[0]
	if strings.Join(r.Fields, ",") != "city,firstName" || len(r.Dropped) != 1 {
		t.Fatalf("merged delivery: %+v, want city and firstName sent, evt-a's firstName dropped", r)
	}
	if d := r.Dropped[0]; d.EventID != "evt-a" || d.Field != "firstName" || d.Stored || d.By.EventID != "evt-b" || d.By.Source != "api" {
		t.Fatalf("dropped %+v, want evt-a firstName beaten by the merged evt-b", d)
	}
}
