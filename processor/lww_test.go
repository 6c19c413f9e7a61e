package processor_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/sandbox"
)

var (
	lwwSeed = flag.Uint64("lww.seed", 1, "seed of the generated event histories in the last-writer-wins property test")
	lwwRuns = flag.Int("lww.runs", 1, "histories the property test generates (PATCHBAY_LWW_LONG=1: 20)")
)

// skipAt is a Skipcall event with its own occurred_at.
func skipAt(id, contact string, at time.Time, patch map[string]any) map[string]any {
	return map[string]any{"id": id, "target": "skipcall", "contact_id": contact, "occurred_at": at.UTC().Format(time.RFC3339Nano), "patch": patch}
}

// TestOlderEventNeverOverwritesNewer is the first example: a change
// made at 10:00 is applied, then a change made at 09:00 arrives late. The
// provider keeps the 10:00 value and the late event is not sent at all.
func TestOlderEventNeverOverwritesNewer(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "aaaaaaaa-2222-4333-8444-000000000001"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.StartWorker(pbtest.WorkerConfig())
	ten := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s.PostEvent(skipAt("late-2", uuid, ten, map[string]any{"city": "Paris"}))
	pbtest.Eventually(t, waitFor, "10:00 change applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	s.PostEvent(skipAt("late-1", uuid, ten.Add(-time.Hour), map[string]any{"city": "Lyon", "role": "CTO"}))
	pbtest.Eventually(t, waitFor, "09:00 change settled", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	c, _ := s.Skipcall.Contact(uuid)
	if c["city"] != "Paris" {
		t.Fatalf("city = %v: a change made at 09:00 overwrote the one made at 10:00", c["city"])
	}
	if c["role"] != "CTO" {
		t.Fatalf("role = %v: the late event's field that nothing newer set must still be applied", c["role"])
	}
	// The late event went out with role only.
	var last map[string]any
	for _, r := range s.Skipcall.Requests() {
		if r.Method == http.MethodPatch && r.Status == http.StatusOK {
			last = map[string]any{}
			if err := json.Unmarshal(r.Body, &last); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, sent := last["city"]; sent || last["role"] != "CTO" {
		t.Fatalf("late PATCH body %v, want role only", last)
	}
}

// TestNewestFirstWithFaults publishes one contact's events newest first,
// with one PATCH in three failing: the final state holds the newest value
// of every field.
func TestNewestFirstWithFaults(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "aaaaaaaa-2222-4333-8444-000000000002"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetFaults(sandbox.Faults{ErrorRate: 0.33, ErrorStatus: http.StatusServiceUnavailable})
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	const n = 12
	for i := n - 1; i >= 0; i-- { // newest first
		patch := map[string]any{"city": "City" + strconv.Itoa(i)}
		if i%3 == 0 {
			patch["company"] = "Co" + strconv.Itoa(i)
		}
		patch["customFields"] = map[string]string{"k" + strconv.Itoa(i%4): "v" + strconv.Itoa(i)}
		s.PostEvent(skipAt("nf-"+strconv.Itoa(i), uuid, base.Add(time.Duration(i)*time.Minute), patch))
	}
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 100
	s.StartWorker(cfg)
	pbtest.Eventually(t, 30*time.Second, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	c, _ := s.Skipcall.Contact(uuid)
	cf, _ := c["customFields"].(map[string]any)
	want := map[string]any{"city": "City11", "company": "Co9"}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want the newest %v", k, c[k], v)
		}
	}
	for k, v := range map[string]string{"k0": "v8", "k1": "v9", "k2": "v10", "k3": "v11"} {
		if cf[k] != v {
			t.Errorf("customFields.%s = %v, want the newest %v", k, cf[k], v)
		}
	}
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("%d dead letters", len(ls))
	}
}

// history is a generated set of Skipcall events over a few contacts, with
// the per-field last-writer-wins state they must leave at the provider.
type history struct {
	events []map[string]any
	want   map[string]map[string]string // contact -> field -> value
}

// generate makes contacts×perContact events setting city, company and
// one of three custom fields to values naming the event, with occurred_at
// shuffled and distinct per contact (ties are covered by the lww package's
// own tests), and dupShare of them posted twice.
func generate(r *rand.Rand, contacts, perContact int, dupShare float64) history {
	h := history{want: map[string]map[string]string{}}
	type clock struct {
		at time.Time
		id string
	}
	best := map[string]map[string]clock{}
	base := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	for k := range contacts {
		uuid := fmt.Sprintf("bbbbbbbb-2222-4333-8444-%012d", k)
		h.want[uuid], best[uuid] = map[string]string{}, map[string]clock{}
		minutes := r.Perm(perContact * 3)
		for j := range perContact {
			id := fmt.Sprintf("h-%d-%d", k, j)
			at := base.Add(time.Duration(minutes[j]) * time.Minute)
			val := fmt.Sprintf("k%d-e%d", k, j)
			patch := map[string]any{}
			set := func(field, v string) {
				if b, ok := best[uuid][field]; !ok || at.After(b.at) {
					best[uuid][field] = clock{at, id}
					h.want[uuid][field] = v
				}
			}
			if r.IntN(2) == 0 {
				patch["city"] = val
				set("city", val)
			}
			if r.IntN(2) == 0 || len(patch) == 0 {
				patch["company"] = val
				set("company", val)
			}
			if r.IntN(2) == 0 {
				key := "f" + strconv.Itoa(r.IntN(3))
				patch["customFields"] = map[string]string{key: val}
				set("customFields."+key, val)
			}
			ev := skipAt(id, uuid, at, patch)
			h.events = append(h.events, ev)
			if r.Float64() < dupShare {
				h.events = append(h.events, ev)
			}
		}
	}
	r.Shuffle(len(h.events), func(i, j int) { h.events[i], h.events[j] = h.events[j], h.events[i] })
	return h
}

// TestReplicasConvergeOnLastWriterWins runs three workers over generated
// histories (shuffled event times, duplicates, 5% injected 5xx, a slow
// provider so deliveries of one contact contend): no contact ever has two
// PATCHes in flight at the provider, and every contact ends with the
// per-field last-writer-wins state of its events.
func TestReplicasConvergeOnLastWriterWins(t *testing.T) {
	t.Parallel()
	runs := *lwwRuns
	if os.Getenv("PATCHBAY_LWW_LONG") != "" {
		runs = max(runs, 20)
	}
	for i := range runs {
		seed := *lwwSeed + uint64(i)
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			h := generate(rand.New(rand.NewPCG(seed, seed)), 30, 6, 0.1)
			s := pbtest.Start(t, pbtest.Options{})
			for uuid := range h.want {
				s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
			}
			s.Skipcall.SetFaults(sandbox.Faults{Latency: 3 * time.Millisecond, ErrorRate: 0.05, ErrorStatus: http.StatusBadGateway})
			cfg := pbtest.WorkerConfig()
			cfg.MaxAttempts = 100
			cfg.Coalesce = 3
			for range 3 {
				s.StartWorker(cfg)
			}
			for start := 0; start < len(h.events); start += 50 {
				batch := h.events[start:min(start+50, len(h.events))]
				// Duplicates inside one batch are refused (ids must be unique in a
				// request), so each event goes on its own.
				for _, ev := range batch {
					s.PostEvent(ev)
				}
			}
			pbtest.Eventually(t, time.Minute, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
			if o := s.Skipcall.Overlaps(); len(o) != 0 {
				t.Errorf("%d contacts had two PATCHes in flight at once, e.g. %+v", len(o), o[0])
			}
			bad := 0
			for uuid, fields := range h.want {
				c, _ := s.Skipcall.Contact(uuid)
				cf, _ := c["customFields"].(map[string]any)
				for f, v := range fields {
					got := c[f]
					if key, ok := strings.CutPrefix(f, "customFields."); ok {
						got = cf[key]
					}
					if got != v {
						bad++
						if bad <= 5 {
							t.Errorf("contact %s %s = %v, want %v", uuid, f, got, v)
						}
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d stale fields", bad)
			}
			if ls := dlqLetters(t, s); len(ls) != 0 {
				t.Fatalf("%d dead letters, e.g. %+v", len(ls), ls[0])
			}
		})
	}
}

// TestRejectedMergeIsSplit queues three events of one contact, so they go
// out as one merged PATCH, and makes the sandbox reject that PATCH and the
// next: the worker delivers them one by one under the same lease, the first
// is dead-lettered alone, and the other two are applied.
func TestRejectedMergeIsSplit(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "aaaaaaaa-2222-4333-8444-000000000003"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s.PostEvent(skipAt("split-1", uuid, base, map[string]any{"city": "Oslo"}))
	s.PostEvent(skipAt("split-2", uuid, base.Add(time.Minute), map[string]any{"company": "Acme"}))
	s.PostEvent(skipAt("split-3", uuid, base.Add(2*time.Minute), map[string]any{"role": "CTO"}))
	s.Skipcall.FailNext(2, http.StatusBadRequest)
	s.StartWorker(pbtest.WorkerConfig())
	pbtest.Eventually(t, waitFor, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	ls := dlqLetters(t, s)
	if len(ls) != 1 || ls[0].EventID != "split-1" {
		t.Fatalf("dead letters %+v, want split-1 alone", ls)
	}
	c, _ := s.Skipcall.Contact(uuid)
	if c["company"] != "Acme" || c["role"] != "CTO" || c["city"] == "Oslo" {
		t.Fatalf("contact %v, want company and role applied and the rejected city not", c)
	}
	var bodies []string
	for _, r := range s.Skipcall.Requests() {
		if r.Method == http.MethodPatch {
			bodies = append(bodies, string(r.Body))
		}
	}
	if len(bodies) != 4 {
		t.Fatalf("PATCH bodies %q, want the merged one then one per event", bodies)
	}
}
