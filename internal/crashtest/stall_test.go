package crashtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/stream"
)

// stallLimit is the longest the worker may leave its ack floor in place
// while events are queued and the provider answers at once. The stall this
// test was written for lasted 30 s (two missed 15 s heartbeats).
const stallLimit = 5 * time.Second

// defaultStreams is the stream configuration the binaries create with their
// defaults (PATCHBAY_SUBJECT_PREFIX, PATCHBAY_EVENTS_STREAM, … unset).
func defaultStreams() stream.Config {
	return stream.Config{
		SubjectPrefix: "contacts", EventsStream: "PATCHBAY_EVENTS", DLQStream: "PATCHBAY_DLQ", Replicas: 1,
		DedupWindow: 25 * time.Hour, EventsMaxAge: 168 * time.Hour, DLQMaxAge: 720 * time.Hour, Consumer: "patchbay-worker", MaxBytes: -1,
	}
}

// queue stores events [0, n) straight into the events stream, the way ingest
// stores them (one subject per contact, the event id as message id). It
// publishes asynchronously in windows and waits for each window's
// acknowledgements, so it waits for room instead of failing when JetStream
// is slow.
func (r *rig) queue(ctx context.Context, n int) {
	r.t.Helper()
	js := r.jetStream()
	scfg := defaultStreams()
	if err := stream.Ensure(ctx, js, scfg); err != nil {
		r.t.Fatal(err)
	}
	const window = 512
	for from := 0; from < n; from += window {
		futures := make([]jetstream.PubAckFuture, 0, window)
		for i := from; i < min(from+window, n); i++ {
			ev := events.Event{
				ID: "ev-" + strconv.Itoa(i), Target: events.TargetSkipcall, ContactID: contactID(i),
				OccurredAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Patch: json.RawMessage(`{"city":"C` + strconv.Itoa(i) + `"}`),
			}
			data, err := ev.Marshal()
			if err != nil {
				r.t.Fatal(err)
			}
			f, err := js.PublishMsgAsync(&nats.Msg{Subject: ev.Subject(scfg.SubjectPrefix), Data: data}, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(scfg.EventsStream))
			if err != nil {
				r.t.Fatalf("queue event %d: %v", i, err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				r.t.Fatalf("queue %s: %v", f.Msg().Subject, err)
			case <-ctx.Done():
				r.t.Fatalf("queueing %d events: %v", n, ctx.Err())
			}
		}
		for i := from; i < min(from+window, n); i++ {
			r.accepted.Store(i, true)
		}
	}
}

// fastTarget is a PATCH target that answers 200 at once and remembers the
// last body per contact: the least a provider can cost, so the worker's own
// reading of the stream is what sets the pace.
type fastTarget struct{ last sync.Map } // contact id -> body

func (f *fastTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/contacts/")
	body, err := io.ReadAll(r.Body)
	if !ok || err != nil || r.Method != http.MethodPatch {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.last.Store(id, string(body))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte("{}"))
}

// TestWorkerNeverStalls runs the worker binary with its default settings
// (concurrency, ack wait, batch sizes) against a NATS JetStream server of
// its own with thousands of events to distinct contacts queued, and the
// sandbox Skipcall answering at once with no rate limit. It watches the
// consumer's ack floor throughout and fails if it stays in place for more
// than stallLimit while events are pending: it observes progress, it does
// not time the run. PATCHBAY_CRASH_LONG=1 queues 200,000 events.
func TestWorkerNeverStalls(t *testing.T) {
	r := newRig(t)
	n := size(10000, 200000)
	r.limit = stallLimit
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	start := time.Now()
	r.queue(ctx, n)
	t.Logf("queued %d events in %s", n, time.Since(start).Round(time.Millisecond))

	target := &fastTarget{}
	srv := httptest.NewServer(target)
	t.Cleanup(srv.Close)
	env := r.providerEnv()
	env["PATCHBAY_SKIPCALL_BASE_URL"] = srv.URL
	r.startWorkerEnv(env)
	r.arm()
	start = time.Now()
	drained := r.settle(func() bool {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		left, err := r.pending(pctx)
		return err == nil && left == 0
	})
	took := time.Since(start)
	longest := r.guard.Longest()
	polls, _ := r.guard.Polls()
	t.Logf("worker drained %d events in %s (%.0f/s); longest span without ack-floor progress: %s (%d polls)",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), longest.Length.Round(time.Millisecond), polls)
	if longest.Length > 0 {
		t.Logf("longest span: %s", longest)
	}
	if !drained {
		t.Errorf("the events stream still had events pending after %s", took.Round(time.Millisecond))
	}
	missing := 0
	for i := range n {
		if b, _ := target.last.Load(contactID(i)); b != `{"city":"C`+strconv.Itoa(i)+`"}` {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d events never reached the target with their own patch", missing, n)
	}
	r.checkGuard()
}
