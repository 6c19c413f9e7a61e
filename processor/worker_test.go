package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/sandbox"
)

// The end-to-end tests of this package run in parallel: each starts its own
// NATS server and sandboxes (pbtest.Start), and most of their time is spent
// waiting on pauses, rate windows and backoff, not on the CPU.
const waitFor = 15 * time.Second

func skipEvent(id, contact string, patch map[string]any) map[string]any {
	return map[string]any{"id": id, "target": "skipcall", "contact_id": contact, "occurred_at": "2026-11-25T10:00:00Z", "patch": patch}
}

func revEvent(id string, contact int64, patch map[string]any) map[string]any {
	return map[string]any{"id": id, "target": "revyops", "contact_id": contact, "occurred_at": "2026-11-25T10:00:00Z", "patch": patch, "structure": "FLAT"}
}

// dlqLetters returns the dead letters in the stack's DLQ stream.
func dlqLetters(t *testing.T, s *pbtest.Stack) []dlq.Letter {
	t.Helper()
	ls, err := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix).ListSubject(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestDeliversToBothProviders(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "Old", "lastName": "Name"})
	s.RevyOps.PutContact(42, map[string]any{"first_name": "Old", "last_name": "Name"})
	s.StartWorker(pbtest.WorkerConfig())

	s.PostEvent(skipEvent("s-1", uuid, map[string]any{"firstName": "Ada", "phoneNumbers": []string{"+33612345678"}, "customFields": map[string]string{"industry": "Tech"}}))
	s.PostEvent(revEvent("r-1", 42, map[string]any{"first_name": "Grace", "company_id": "acme.com", "contact_custom_fields": []map[string]any{{"field_name": "tier", "field_value": "gold"}}}))

	pbtest.Eventually(t, waitFor, "skipcall contact updated", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["firstName"] == "Ada"
	})
	pbtest.Eventually(t, waitFor, "revyops contact updated", func() bool {
		c, _ := s.RevyOps.Contact(42)
		return c["first_name"] == "Grace"
	})
	sc, _ := s.Skipcall.Contact(uuid)
	if sc["lastName"] != "Name" {
		t.Errorf("a PATCH must leave other fields alone: lastName = %v", sc["lastName"])
	}
	if fmt.Sprint(sc["phoneNumbers"]) != "[+33612345678]" {
		t.Errorf("phoneNumbers = %v", sc["phoneNumbers"])
	}
	for _, r := range s.Skipcall.Requests() {
		if r.SpecErr != "" || r.Status != 200 {
			t.Errorf("skipcall request %s %s: status %d spec error %q", r.Method, r.Path, r.Status, r.SpecErr)
		}
		if r.Header.Get("Authorization") != "Bearer "+pbtest.SkipcallKey {
			t.Errorf("skipcall auth header %q", r.Header.Get("Authorization"))
		}
	}
	for _, r := range s.RevyOps.Requests() {
		if r.SpecErr != "" || r.Status != 200 {
			t.Errorf("revyops request %s %s: status %d spec error %q", r.Method, r.Path, r.Status, r.SpecErr)
		}
		if r.RawQuery != "structure=FLAT" {
			t.Errorf("revyops query %q, want structure=FLAT", r.RawQuery)
		}
	}
	pbtest.Eventually(t, waitFor, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
}

func TestSameEventIDAppliedOnce(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "11111111-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	ev := skipEvent("dup-1", uuid, map[string]any{"city": "Lyon"})
	s.PostEvent(ev)
	s.PostEvent(ev)
	// A later, different event proves the worker has gone past both copies.
	s.PostEvent(skipEvent("dup-2", uuid, map[string]any{"country": "France"}))
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 2 {
		t.Fatalf("the stream holds %d events, want 2: the duplicate id was stored again", n)
	}
	s.StartWorker(pbtest.WorkerConfig())
	pbtest.Eventually(t, waitFor, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	c, _ := s.Skipcall.Contact(uuid)
	if c["country"] != "France" || c["city"] != "Lyon" {
		t.Fatalf("contact %v, want city Lyon and country France", c)
	}
	// The two stored events are applied one by one or merged into one PATCH.
	if n := s.Skipcall.PatchCount(uuid); n < 1 || n > 2 {
		t.Fatalf("%d PATCHes applied for 2 stored events", n)
	}
}

func TestRetriesThenApplies(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "22222222-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.FailNext(2, http.StatusInternalServerError)
	s.StartWorker(pbtest.WorkerConfig())
	s.PostEvent(skipEvent("retry-1", uuid, map[string]any{"role": "CTO"}))
	pbtest.Eventually(t, waitFor, "applied after retries", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["role"] == "CTO"
	})
	attempts := 0
	for _, r := range s.Skipcall.Requests() {
		if r.Path == "/v1/contacts/"+uuid {
			attempts++
		}
	}
	if attempts != 3 {
		t.Fatalf("%d attempts, want 3 (500, 500, 200)", attempts)
	}
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("dead letters: %+v", ls)
	}
}

func TestExhaustedRetriesDeadLetter(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "33333333-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.FailNext(-1, http.StatusInternalServerError)
	cfg := pbtest.WorkerConfig()
	s.StartWorker(cfg)
	s.PostEvent(skipEvent("always-500", uuid, map[string]any{"role": "CTO"}))
	var ls []dlq.Letter
	pbtest.Eventually(t, waitFor, "dead letter", func() bool { ls = dlqLetters(t, s); return len(ls) == 1 })
	l := ls[0]
	if l.Reason != dlq.ReasonExhausted || l.Status != 500 || l.Attempts != cfg.MaxAttempts {
		t.Fatalf("letter %+v", l)
	}
	if l.ErrorCode == "" || l.Excerpt == "" || l.EventID != "always-500" || l.Target != "skipcall" {
		t.Fatalf("letter lacks provider error details: %+v", l)
	}
	if l.Subject != "contacts.patch.skipcall."+uuid || l.StreamSeq == 0 || l.FirstAttempt.IsZero() || l.LastAttempt.Before(l.FirstAttempt) {
		t.Fatalf("letter lacks origin: %+v", l)
	}
	if got := len(s.Skipcall.Requests()); got != cfg.MaxAttempts {
		t.Fatalf("%d requests, want %d", got, cfg.MaxAttempts)
	}
	pbtest.Eventually(t, waitFor, "original removed", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
}

func TestPermanentErrorsDeadLetterAtOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		status int
		target string
	}{
		{"skipcall 404", 404, "skipcall"},
		{"skipcall 400", 400, "skipcall"},
		{"revyops 404", 404, "revyops"},
		{"revyops 401 company not ours", 401, "revyops"},
		{"revyops 409", 409, "revyops"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := pbtest.Start(t, pbtest.Options{})
			uuid := "44444444-2222-4333-8444-555555555555"
			s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
			s.RevyOps.PutContact(7, map[string]any{"first_name": "A", "last_name": "B"})
			if tc.target == "skipcall" {
				s.Skipcall.FailNext(1, tc.status)
				s.PostEvent(skipEvent("perm", uuid, map[string]any{"city": "Nice"}))
			} else {
				s.RevyOps.FailNext(1, tc.status)
				s.PostEvent(revEvent("perm", 7, map[string]any{"origin": "crm"}))
			}
			s.StartWorker(pbtest.WorkerConfig())
			var ls []dlq.Letter
			pbtest.Eventually(t, waitFor, "dead letter", func() bool { ls = dlqLetters(t, s); return len(ls) == 1 })
			if ls[0].Reason != dlq.ReasonRejected || ls[0].Status != tc.status || ls[0].Attempts != 1 {
				t.Fatalf("letter %+v", ls[0])
			}
		})
	}
}

func TestUnknownContactDeadLetters(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	s.StartWorker(pbtest.WorkerConfig())
	s.PostEvent(skipEvent("nobody", "55555555-2222-4333-8444-555555555555", map[string]any{"city": "Nice"}))
	var ls []dlq.Letter
	pbtest.Eventually(t, waitFor, "dead letter", func() bool { ls = dlqLetters(t, s); return len(ls) == 1 })
	if ls[0].Reason != dlq.ReasonRejected || ls[0].Status != 404 || ls[0].Attempts != 1 {
		t.Fatalf("letter %+v", ls[0])
	}
}

func TestGarbageInStreamDeadLettersAsInvalid(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	s.StartWorker(pbtest.WorkerConfig())
	ctx := context.Background()
	if _, err := s.JS.Publish(ctx, "contacts.patch.skipcall.garbage", []byte("\x00not json{")); err != nil {
		t.Fatal(err)
	}
	// Valid JSON on a subject that does not match the event is invalid too.
	if _, err := s.JS.Publish(ctx, "contacts.patch.revyops.1", []byte(`{"id":"x","target":"revyops","contact_id":2,"occurred_at":"2026-11-25T10:00:00Z","patch":{"origin":"a"}}`)); err != nil {
		t.Fatal(err)
	}
	var ls []dlq.Letter
	pbtest.Eventually(t, waitFor, "two dead letters", func() bool { ls = dlqLetters(t, s); return len(ls) == 2 })
	for _, l := range ls {
		if l.Reason != dlq.ReasonInvalid || l.Detail == "" || l.Attempts != 1 {
			t.Fatalf("letter %+v", l)
		}
	}
	kept := false
	for _, l := range ls {
		kept = kept || (l.Subject == "contacts.patch.skipcall.garbage" && string(l.Data) == "\x00not json{")
	}
	if !kept {
		t.Fatalf("original garbage payload not kept: %+v", ls)
	}
	pbtest.Eventually(t, waitFor, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
}

func TestWorkerStoppedMidDeliveryLosesNothing(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "66666666-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetFaults(sandbox.Faults{Latency: 30 * time.Second})
	cfg := pbtest.WorkerConfig()
	cfg.DrainTimeout = 0
	w1 := s.StartWorker(cfg)
	s.PostEvent(skipEvent("mid-1", uuid, map[string]any{"city": "Oslo"}))
	// Wait until the worker holds the message (delivered, not acknowledged).
	pbtest.Eventually(t, waitFor, "delivery in flight", func() bool {
		c, err := s.JS.Consumer(context.Background(), s.Stream.EventsStream, s.Stream.TargetConsumer("skipcall"))
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumAckPending == 1
	})
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Skipcall.Contact(uuid); c["city"] == "Oslo" {
		t.Fatal("the slow call was applied before the stop; the test proves nothing")
	}
	s.Skipcall.SetFaults(sandbox.Faults{})
	s.StartWorker(pbtest.WorkerConfig())
	pbtest.Eventually(t, waitFor, "redelivered and applied", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Oslo"
	})
	pbtest.Eventually(t, waitFor, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
}

func TestEventsOfOneContactApplyInOrder(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "77777777-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	// The first event fails twice; the later ones must wait behind it.
	s.Skipcall.FailNext(2, http.StatusServiceUnavailable)
	for i := 1; i <= 5; i++ {
		s.PostEvent(skipEvent("ord-"+strconv.Itoa(i), uuid, map[string]any{"city": "City" + strconv.Itoa(i)}))
	}
	s.StartWorker(pbtest.WorkerConfig())
	pbtest.Eventually(t, waitFor, "last event applied", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "City5"
	})
	// Every accepted PATCH carries a later city than the one before it
	// (backlogged events may be merged into one PATCH, never reordered).
	last := 0
	for _, r := range s.Skipcall.Requests() {
		if r.Status != 200 {
			continue
		}
		var body struct{ City string }
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(body.City, "City"))
		if n <= last {
			t.Fatalf("applied out of order: City%d after City%d", n, last)
		}
		last = n
	}
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("dead letters: %+v", ls)
	}
}

func TestBacklogOfOneContactIsCoalesced(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "abababab-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetFaults(sandbox.Faults{Latency: 500 * time.Millisecond})
	s.StartWorker(pbtest.WorkerConfig())
	post := func(i int) {
		s.PostEvent(skipEvent("co-"+strconv.Itoa(i), uuid, map[string]any{
			"city": "City" + strconv.Itoa(i), "customFields": map[string]string{"k" + strconv.Itoa(i): "v"},
		}))
	}
	post(0)
	pbtest.Eventually(t, waitFor, "first PATCH in flight", func() bool {
		c, err := s.JS.Consumer(context.Background(), s.Stream.EventsStream, s.Stream.TargetConsumer("skipcall"))
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumAckPending == 1
	})
	const n = 10
	for i := 1; i < n; i++ {
		post(i)
	}
	pbtest.Eventually(t, waitFor, "backlog applied", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "City"+strconv.Itoa(n-1)
	})
	c, _ := s.Skipcall.Contact(uuid)
	cf, _ := c["customFields"].(map[string]any)
	for i := range n {
		if cf["k"+strconv.Itoa(i)] != "v" {
			t.Fatalf("custom field k%d lost in the merge: %v", i, cf)
		}
	}
	if got := s.Skipcall.PatchCount(uuid); got > 3 {
		t.Fatalf("%d PATCHes for %d events: the backlog was not coalesced", got, n)
	}
	for _, r := range s.Skipcall.Requests() {
		if r.SpecErr != "" {
			t.Fatalf("merged PATCH breaks the spec: %s", r.SpecErr)
		}
	}
	pbtest.Eventually(t, waitFor, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
}

// TestRateLimitKeptWithoutUsingAttempts posts more events than one window
// allows: the shared budget spreads them over windows so the sandbox never
// sees more than its limit and never answers 429, and waiting for a window
// is not an attempt (MaxAttempts 1 would dead-letter any attempt that
// failed).
func TestRateLimitKeptWithoutUsingAttempts(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{SkipcallRate: 3, SkipcallWindow: time.Second})
	postRateLimited(t, s, "rl", 8)
	for _, w := range s.Skipcall.Windows() {
		if w.Requests+w.Limited > 3 {
			t.Errorf("window %s–%s saw %d requests, limit 3", w.Start.Format("15:04:05.000"), w.End.Format("15:04:05.000"), w.Requests+w.Limited)
		}
	}
	if n := s.Skipcall.StatusCounts()[http.StatusTooManyRequests]; n != 0 {
		t.Errorf("%d answers were 429: the budget let more through than the plan", n)
	}
}

// TestRateLimited429WaitsWithoutUsingAttempts makes the sandbox answer the
// first three PATCHes with 429, as when another client of the same key used
// up the provider's window: the target pauses, the events are sent again
// after the pause, and no 429 uses up an attempt (MaxAttempts 1).
func TestRateLimited429WaitsWithoutUsingAttempts(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{SkipcallRate: 30, SkipcallWindow: 2 * time.Second})
	s.Skipcall.FailNext(3, http.StatusTooManyRequests)
	postRateLimited(t, s, "rl429", 6)
	if n := s.Skipcall.StatusCounts()[http.StatusTooManyRequests]; n != 3 {
		t.Fatalf("the sandbox answered 429 %d times, want the 3 injected", n)
	}
}

// postRateLimited sends n events to n contacts, starts a worker with
// MaxAttempts 1 and waits until each is applied exactly once, with nothing
// dead-lettered.
func postRateLimited(t *testing.T, s *pbtest.Stack, prefix string, n int) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("88888888-2222-4333-8444-%012d", i)
		s.Skipcall.PutContact(ids[i], map[string]any{"firstName": "A", "lastName": "B"})
	}
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 1 // a 429 that used up an attempt would dead-letter at once
	cfg.HoldLimit = 3 * time.Second
	for i, id := range ids {
		s.PostEvent(skipEvent(prefix+"-"+strconv.Itoa(i), id, map[string]any{"city": "Rome"}))
	}
	s.StartWorker(cfg)
	pbtest.Eventually(t, time.Minute, "all applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	for _, id := range ids {
		if n := s.Skipcall.PatchCount(id); n != 1 {
			t.Errorf("contact %s: %d PATCHes applied, want 1", id, n)
		}
	}
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("rate limiting dead-lettered %d events", len(ls))
	}
}

func TestBadCredentialsPauseNeverDeadLetter(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "99999999-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, http.StatusUnauthorized, "UNAUTHORIZED")
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 1
	s.StartWorker(cfg)
	s.PostEvent(skipEvent("cred-1", uuid, map[string]any{"city": "Bern"}))
	pbtest.Eventually(t, waitFor, "retried after the credentials pause", func() bool {
		n := 0
		for _, r := range s.Skipcall.Requests() {
			if r.Status == http.StatusUnauthorized {
				n++
			}
		}
		return n >= 3
	})
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("a bad key dead-lettered the event: %+v", ls[0])
	}
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, 0, "")
	pbtest.Eventually(t, waitFor, "applied once the key works", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Bern"
	})
}

// TestPausedTargetHoldsBoundedBacklog queues thousands of events behind a
// refused key: the worker holds at most its room (Config.Room) of them,
// the rest stay in the stream without being fetched and handed back, only
// probes reach the provider, and once the key works again everything is
// applied and nothing is dead-lettered.
func TestPausedTargetHoldsBoundedBacklog(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, http.StatusUnauthorized, "UNAUTHORIZED")
	const n = 1500
	ctx := context.Background()
	for i := range n {
		uuid := fmt.Sprintf("cccccccc-2222-4333-8444-%012d", i)
		s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
		data, _ := json.Marshal(skipEvent("held-"+strconv.Itoa(i), uuid, map[string]any{"city": "Turin"}))
		if _, err := s.JS.PublishAsync("contacts.patch.skipcall."+uuid, data); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-s.JS.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("publishes not acknowledged")
	}
	cfg := pbtest.WorkerConfig()
	cfg.Concurrency = 4
	s.StartWorker(cfg)
	room := cfg.Room()
	var cons jetstream.Consumer
	pbtest.Eventually(t, waitFor, "the worker's consumer", func() bool {
		var err error
		cons, err = s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.TargetConsumer("skipcall"))
		return err == nil
	})
	pbtest.Eventually(t, waitFor, "the first refusal", func() bool { return s.Skipcall.StatusCounts()[http.StatusUnauthorized] > 0 })
	// Watch the consumer across several probe periods.
	deadline := time.Now().Add(3 * time.Second)
	maxPending, maxDelivered := 0, uint64(0)
	for time.Now().Before(deadline) {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		maxPending = max(maxPending, info.NumAckPending)
		maxDelivered = max(maxDelivered, info.Delivered.Consumer)
		time.Sleep(20 * time.Millisecond)
	}
	if maxPending > room {
		t.Fatalf("the worker held %d events of a paused target, more than its room %d", maxPending, room)
	}
	if maxDelivered > uint64(2*room) {
		t.Fatalf("%d deliveries while paused: the backlog is being fetched and handed back", maxDelivered)
	}
	if probes := s.Skipcall.StatusCounts()[http.StatusUnauthorized]; probes > 10 {
		t.Fatalf("%d requests refused with 401 in 3 s: only probes should go out", probes)
	}
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, 0, "")
	pbtest.Eventually(t, time.Minute, "backlog applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("%d dead letters", len(ls))
	}
}
