package processor_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestWindowUsedUpReadsAheadAndMergesPerContact guards "the backlog is read
// ahead while the window is used up, and each request carries everything
// pending for its contact": Skipcall allows 20 requests per 12 s. Twenty
// contacts use the first window up; 6 s into the pause (past the 5 s
// expiry of a pull request sent before it) 20 other contacts get 30 events
// each, interleaved. While the window stays used up the worker fetches all
// 600, past the room its deliveries need (it holds them: the consumer's
// ack-pending count), without sending any, and once it opens each of the
// 20 contacts gets exactly one request carrying its newest values, with no
// 429.
func TestWindowUsedUpReadsAheadAndMergesPerContact(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{SkipcallRate: 20, SkipcallWindow: 12 * time.Second})
	id := func(group string, i int) string { return fmt.Sprintf("%s-2222-4333-8444-%012d", group, i) }
	const warm = 20
	for i := range warm {
		s.Skipcall.PutContact(id("10101010", i), map[string]any{"firstName": "A", "lastName": "B"})
	}
	// 600 events: more than the room deliveries need (512), so they are
	// read ahead into the extra room READ_AHEAD gives a limited target.
	const contacts, each = 20, 30
	for i := range contacts {
		s.Skipcall.PutContact(id("20202020", i), map[string]any{"firstName": "A", "lastName": "B"})
	}
	cfg := pbtest.WorkerConfig()
	cfg.ReadAhead = 1000
	w := startObserved(t, s, cfg, nil)
	for i := range warm {
		s.PostEvent(skipEvent(fmt.Sprintf("warm-%d", i), id("10101010", i), map[string]any{"city": "Oslo"}))
	}
	pbtest.Eventually(t, waitFor, "the first window used up and the target paused", func() bool {
		return s.Skipcall.StatusCounts()[http.StatusOK] >= warm && w.paused(t, "skipcall") == 1
	})
	paused := time.Now()
	pbtest.Eventually(t, waitFor, "6 s of the pause", func() bool { return time.Since(paused) > 6*time.Second })
	for k := 0; k < each; k += 10 { // batches of 200 events
		var batch []map[string]any
		for kk := k; kk < k+10; kk++ {
			for i := range contacts {
				ev := skipEvent(fmt.Sprintf("ra-%d-%d", i, kk), id("20202020", i), map[string]any{"city": fmt.Sprintf("C%d", kk)})
				ev["occurred_at"] = time.Date(2026, 11, 25, 10, 0, kk, 0, time.UTC).Format(time.RFC3339)
				batch = append(batch, ev)
			}
		}
		body, _ := json.Marshal(batch)
		if code, resp := s.Post(body, nil); code != http.StatusAccepted {
			t.Fatalf("POST batch: %d %s", code, resp)
		}
	}
	sent := func() int {
		n := 0
		for i := range contacts {
			n += s.Skipcall.PatchCount(id("20202020", i))
		}
		return n
	}
	pbtest.Eventually(t, waitFor, "the whole backlog held by the worker", func() bool {
		info, err := tryConsumerInfo(s, "skipcall")
		return err == nil && info.NumAckPending == contacts*each || sent() > 0
	})
	if n := sent(); n > 0 {
		t.Fatalf("%d requests went out before the worker had read the backlog ahead: the window opened while the events were posted, or the worker does not fetch while the window is used up", n)
	}
	pbtest.Eventually(t, waitFor, "every contact applied", func() bool {
		for i := range contacts {
			if c, _ := s.Skipcall.Contact(id("20202020", i)); c["city"] != fmt.Sprintf("C%d", each-1) {
				return false
			}
		}
		return true
	})
	for i := range contacts {
		if n := s.Skipcall.PatchCount(id("20202020", i)); n != 1 {
			t.Errorf("contact %d: %d requests, want 1 carrying its %d events", i, n, each)
		}
	}
	if n := s.Skipcall.StatusCounts()[http.StatusTooManyRequests]; n != 0 {
		t.Errorf("%d answers were 429", n)
	}
}

// TestBacklogIsReadBeforeTheFirstRequests guards "a rate-limited target's
// jobs wait while its backlog is still being read" (catchUp): 40 contacts
// get 5 events each, interleaved, before the worker starts; Skipcall allows
// 20 requests per 3 s. The first window's requests already carry all of
// their contact's events: each contact gets exactly one request.
func TestBacklogIsReadBeforeTheFirstRequests(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{SkipcallRate: 20, SkipcallWindow: 3 * time.Second})
	id := func(i int) string { return fmt.Sprintf("40404040-2222-4333-8444-%012d", i) }
	const contacts, each = 40, 5
	fields := [each]string{"city", "company", "role", "country", "email"}
	for i := range contacts {
		s.Skipcall.PutContact(id(i), map[string]any{"firstName": "A", "lastName": "B"})
	}
	for k := range each {
		for i := range contacts {
			v := fmt.Sprintf("V%d", k)
			if fields[k] == "email" {
				v = fmt.Sprintf("v%d@example.com", i)
			}
			s.PostEvent(skipEvent(fmt.Sprintf("bl-%d-%d", i, k), id(i), map[string]any{fields[k]: v}))
		}
	}
	startObserved(t, s, pbtest.WorkerConfig(), nil)
	pbtest.Eventually(t, time.Minute, "the backlog applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	total := 0
	for i := range contacts {
		n := s.Skipcall.PatchCount(id(i))
		total += n
		if n != 1 {
			t.Errorf("contact %d: %d requests, want 1", i, n)
		}
	}
	t.Logf("%d requests for %d contacts", total, contacts)
}

// TestBurstIsMergedBeforeTheFirstRequest guards "a rate-limited target's
// contact waits a moment after its first event" (lane.lingering): with the
// worker running and Skipcall allowing 20 requests per 3 s, 40 contacts
// get 5 events each, posted as 5 batches one after the other (a CRM
// re-syncing a list). Each contact gets exactly one request, the first
// window's included.
func TestBurstIsMergedBeforeTheFirstRequest(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{SkipcallRate: 20, SkipcallWindow: 3 * time.Second})
	id := func(i int) string { return fmt.Sprintf("50505050-2222-4333-8444-%012d", i) }
	const contacts, each = 40, 5
	fields := [each]string{"city", "company", "role", "country", "lastName"}
	for i := range contacts {
		s.Skipcall.PutContact(id(i), map[string]any{"firstName": "A", "lastName": "B"})
	}
	startObserved(t, s, pbtest.WorkerConfig(), nil)
	pbtest.Eventually(t, waitFor, "the worker's consumer declared", func() bool {
		_, err := tryConsumerInfo(s, "skipcall")
		return err == nil
	})
	for k := range each {
		var batch []map[string]any
		for i := range contacts {
			batch = append(batch, skipEvent(fmt.Sprintf("bu-%d-%d", i, k), id(i), map[string]any{fields[k]: fmt.Sprintf("V%d", k)}))
		}
		body, _ := json.Marshal(batch)
		if code, resp := s.Post(body, nil); code != http.StatusAccepted {
			t.Fatalf("POST batch: %d %s", code, resp)
		}
	}
	pbtest.Eventually(t, time.Minute, "the burst applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	total := 0
	for i := range contacts {
		n := s.Skipcall.PatchCount(id(i))
		total += n
		if n != 1 {
			t.Errorf("contact %d: %d requests, want 1", i, n)
		}
	}
	t.Logf("%d requests for %d contacts", total, contacts)
}
