package processor_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/logtest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
)

// recordLogs makes s's logger a recorder and returns it: the workers and
// budgets started on s from now on log to it.
func recordLogs(s *pbtest.Stack) *logtest.Recorder {
	r, log := logtest.New()
	s.Log = log
	return r
}

// expectLog fails t unless msg was logged at level with attrs (a value ""
// asks only that the attribute is there and not empty), and returns the
// records that match.
func expectLog(t *testing.T, r *logtest.Recorder, level slog.Level, msg string, attrs map[string]string) []logtest.Record {
	t.Helper()
	var out []logtest.Record
	var seen []string
next:
	for _, lr := range r.Records(msg) {
		seen = append(seen, fmt.Sprintf("%s %v", lr.Level, lr.Attrs))
		if lr.Level != level {
			continue
		}
		for k, v := range attrs {
			got := lr.Str(k)
			if got == "" || v != "" && got != v {
				continue next
			}
		}
		out = append(out, lr)
	}
	if len(out) == 0 {
		t.Errorf("no %s %q with %v logged; that message was logged %d times: %s", level, msg, attrs, len(seen), strings.Join(seen, "; "))
	}
	return out
}

// neverLogged fails t for each of msgs that was logged.
func neverLogged(t *testing.T, r *logtest.Recorder, msgs ...string) {
	t.Helper()
	for _, msg := range msgs {
		if got := r.Records(msg); len(got) > 0 {
			t.Errorf("logged %q %d times, though nothing it reports failed: %v", msg, len(got), got[0].Attrs)
		}
	}
}

// The warnings of a failure the worker survives by itself; each test says
// which of them its failure must log, and none of the others may appear.
const (
	logReleaseFailed     = "contact lease release failed; it expires by itself"
	logCredentialsOKFail = "could not clear the credentials pause"
	logPauseShareFail    = "could not share the 429 pause"
	logCredsShareFail    = "could not share the credentials pause"
	logAckFailed         = "ack failed; the event will be redelivered and re-applied"
	logNakFailed         = "nak failed; the event will be redelivered after the ack wait"
	logSetupRetry        = "could not declare the consumers and buckets; retrying"
	logLegacyRemoved     = "removed the consumer of an earlier version; its pending events are delivered by the per-target consumers"
)

// failureWarnings are the warnings of failures to reach NATS or settle a
// message, none of which happens in a test unless it makes it happen.
var failureWarnings = []string{logReleaseFailed, logCredentialsOKFail, logPauseShareFail, logCredsShareFail, logAckFailed, logNakFailed, logSetupRetry}

// TestDeliveryLogs: an operator reads the worker's log. A delivery that
// met a 429, refused credentials or a transient failure says so once, with
// the provider and the event; a delivery that met nothing logs it was
// applied. None logs a failed acknowledgement, hand-back, pause share,
// credentials clearing or lease release (they did not fail), nor the
// removal of a consumer of an earlier version (there was none).
func TestDeliveryLogs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		alwaysLease bool
		status      int // RevyOps' answer to the first PATCH (0: none forced)
		level       slog.Level
		msg         string
		attrs       map[string]string
	}{
		{name: "applied under the solo lease", level: slog.LevelDebug, msg: "applied", attrs: map[string]string{"status": "200"}},
		{name: "applied under a contact lease", alwaysLease: true, level: slog.LevelDebug, msg: "applied", attrs: map[string]string{"status": "200"}},
		{name: "429", status: http.StatusTooManyRequests, level: slog.LevelWarn,
			msg: "provider answered 429; target paused for every replica", attrs: map[string]string{"until": ""}},
		{name: "credentials refused", status: http.StatusForbidden, level: slog.LevelError,
			msg:   "PROVIDER REJECTED OUR CREDENTIALS: deliveries to this target are paused for every replica; fix the API key or plan",
			attrs: map[string]string{"status": "403", "err": ""}},
		{name: "transient failure", status: http.StatusInternalServerError, level: slog.LevelInfo,
			msg: "transient failure; retrying", attrs: map[string]string{"attempt": "1", "delay": "", "err": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, pbtest.Options{})
			logs := recordLogs(s)
			s.RevyOps.PutContact(7, map[string]any{"first_name": "Old", "last_name": "Name"})
			if tc.status != 0 {
				s.RevyOps.FailNext(1, tc.status)
			}
			cfg := pbtest.WorkerConfig()
			cfg.AlwaysLease = tc.alwaysLease
			w := startObserved(t, s, cfg, nil)
			s.PostEvent(revEvent("logs-1", 7, map[string]any{"first_name": "Ada"}))
			pbtest.Eventually(t, waitFor, "the event applied and acknowledged", func() bool {
				c, _ := s.RevyOps.Contact(7)
				return c["first_name"] == "Ada" && s.StreamMsgs(s.Stream.EventsStream) == 0
			})
			if err := w.Stop(); err != nil { // every delivery goroutine has returned
				t.Fatal(err)
			}
			want := map[string]string{"provider": "revyops", "event_id": "logs-1", "seq": "1"}
			for k, v := range tc.attrs {
				want[k] = v
			}
			if got := expectLog(t, logs, tc.level, tc.msg, want); len(got) > 1 {
				t.Errorf("%q logged %d times for one failure, want once", tc.msg, len(got))
			}
			neverLogged(t, logs, failureWarnings...)
			neverLogged(t, logs, logLegacyRemoved)
		})
	}
}

// TestLegacyConsumerRemovalIsLogged: a worker that finds the single
// consumer of an earlier version removes it, says so once, naming it, and
// starts at once (no failed setup to retry).
func TestLegacyConsumerRemovalIsLogged(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	logs := recordLogs(s)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := s.JS.CreateOrUpdateConsumer(ctx, s.Stream.EventsStream, jetstream.ConsumerConfig{
		Durable: s.Stream.Consumer, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	s.RevyOps.PutContact(7, map[string]any{"first_name": "Old", "last_name": "Name"})
	w := startObserved(t, s, pbtest.WorkerConfig(), nil)
	s.PostEvent(revEvent("legacy-1", 7, map[string]any{"first_name": "Ada"}))
	pbtest.Eventually(t, waitFor, "the event applied", func() bool {
		c, _ := s.RevyOps.Contact(7)
		return c["first_name"] == "Ada"
	})
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := expectLog(t, logs, slog.LevelInfo, logLegacyRemoved, map[string]string{"consumer": s.Stream.Consumer}); len(got) > 1 {
		t.Errorf("the removal logged %d times, want once", len(got))
	}
	neverLogged(t, logs, failureWarnings...)
	if _, err := s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.Consumer); err == nil {
		t.Error("the consumer of an earlier version is still there")
	}
}

// afterFirstPatch passes PATCHes to the provider client, and after the
// first one's answer runs do: NATS failing between the call and what the
// delivery does with its answer.
type afterFirstPatch struct {
	inner processor.Provider
	do    func()
	once  sync.Once
}

func (p *afterFirstPatch) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	res, err := p.inner.Patch(ctx, ev)
	p.once.Do(p.do)
	return res, err
}

// deleteBucket returns a func that deletes the KV bucket named name on s,
// failing t (from any goroutine) if it cannot.
func deleteBucket(t *testing.T, s *pbtest.Stack, name string) func() {
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := s.JS.DeleteKeyValue(ctx, s.Stream.KVBucket(name)); err != nil {
			t.Errorf("delete bucket %s: %v", name, err)
		}
	}
}

// TestFailedSharesAreLogged: when NATS fails the writes the worker makes
// after the provider's answer, the worker goes on and an operator is told,
// with the error: a contact lease that cannot be released (it expires by
// itself; the event is applied all the same), and a 429 or credentials
// pause that cannot be shared with the other replicas.
func TestFailedSharesAreLogged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		status  int    // RevyOps' answer to the first PATCH (0: none forced)
		bucket  string // deleted once the first PATCH is answered
		msg     string
		attrs   map[string]string // besides the provider and the error
		applied bool              // the event is applied all the same
	}{
		{name: "lease release", bucket: "LEASES", msg: logReleaseFailed, applied: true},
		{name: "429 pause", status: http.StatusTooManyRequests, bucket: "RATE", msg: logPauseShareFail, attrs: map[string]string{"event_id": "share-1"}},
		{name: "credentials pause", status: http.StatusForbidden, bucket: "RATE", msg: logCredsShareFail, attrs: map[string]string{"event_id": "share-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, pbtest.Options{})
			logs := recordLogs(s)
			s.RevyOps.PutContact(7, map[string]any{"first_name": "Old", "last_name": "Name"})
			if tc.status != 0 {
				s.RevyOps.FailNext(1, tc.status)
			}
			cfg := pbtest.WorkerConfig()
			cfg.AlwaysLease = true // a lease per contact, released after each delivery
			w := startObserved(t, s, cfg, func(tg events.Target, p processor.Provider) processor.Provider {
				if tg != events.TargetRevyOps {
					return p
				}
				return &afterFirstPatch{inner: p, do: deleteBucket(t, s, tc.bucket)}
			})
			s.PostEvent(revEvent("share-1", 7, map[string]any{"first_name": "Ada"}))
			pbtest.Eventually(t, waitFor, "the warning logged", func() bool { return len(logs.Records(tc.msg)) > 0 })
			if err := w.Stop(); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"provider": "revyops", "err": ""}
			for k, v := range tc.attrs {
				want[k] = v
			}
			expectLog(t, logs, slog.LevelWarn, tc.msg, want)
			if tc.applied {
				if n := w.deliveries(t, "revyops", "applied"); n != 1 {
					t.Errorf("%.0f deliveries applied, want 1", n)
				}
			}
			var others []string
			for _, m := range failureWarnings {
				if m != tc.msg {
					others = append(others, m)
				}
			}
			neverLogged(t, logs, others...)
		})
	}
}
