package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/sandbox"
)

// maxRequestsPerContact is issue 19's target for a rate-limited backlog:
// requests per contact with pending changes.
const maxRequestsPerContact = 1.1

// maxDrainRatio is issue 19's target for the drain time, against the ideal
// of one request per contact (contacts ÷ limit windows).
const maxDrainRatio = 1.2

// backlogRun is what one rate-limited backlog scenario measured.
type backlogRun struct {
	contacts, requests int
	took, ideal        time.Duration
	f                  rpFigures
}

func (b backlogRun) perContact() float64 { return float64(b.requests) / float64(b.contacts) }

// patchRequests counts the PATCHes the sandbox got (any answer) and the
// contacts they went to.
func patchRequests(sk *sandbox.Skipcall) (requests, contacts int) {
	seen := map[string]bool{}
	for _, rq := range sk.Requests() {
		if rq.Method == http.MethodPatch {
			requests++
			seen[strings.ToLower(strings.TrimPrefix(rq.Path, "/v1/contacts/"))] = true
		}
	}
	return requests, len(seen)
}

// runBacklog queues a backlog of n events (10% posted twice) to contacts
// contacts, in order or shuffled, then starts workers worker processes on
// a Skipcall key limited to limit requests per window, and waits until it
// is drained. With kill, the first worker is SIGKILLed once a third of the
// contacts are done.
func runBacklog(t *testing.T, workers, contacts, n int, shuffled, kill bool, limit int, window time.Duration) backlogRun {
	r := newRig(t)
	rateLimited(r, limit, window, 5*time.Millisecond)
	h := generate(rand.New(rand.NewPCG(19, uint64(workers))), "bl", contacts, n, 0.1, shuffled)
	r.startIngest(nil)
	o := newObserver(r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := &rpPoster{r: r}
	p.postAll(ctx, h.posts, 16)
	if left := o.msgs(rpEvents); left < len(h.want) {
		t.Fatalf("%d events queued for %d contacts: the backlog is not there", left, len(h.want))
	}
	start := time.Now()
	ws := startWorkers(r, workers, rateEnv(limit, window, map[string]string{
		"PATCHBAY_WORKER_ACK_WAIT": "5s", "PATCHBAY_WORKER_LEASE_TTL": "5s",
	}))
	if kill {
		waitUntil(t, 2*time.Minute, "a third of the contacts done", func() bool {
			return r.sk.StatusCounts()[http.StatusOK] >= len(h.want)/3
		})
		ws[0].p.Kill()
		if o.msgs(rpEvents) == 0 {
			t.Fatal("the backlog was drained before the kill; the scenario proves nothing")
		}
	}
	settle(t, o, r.sk, h, 4*time.Minute)
	b := backlogRun{contacts: len(h.want), took: time.Since(start)}
	b.ideal = time.Duration(float64(b.contacts) / float64(limit) * float64(window))
	b.f = checkReplicas(t, r, o, h, limit, 0.01)
	reqs, reached := patchRequests(r.sk)
	b.requests = reqs
	if reached != b.contacts {
		t.Errorf("requests reached %d contacts, %d have changes", reached, b.contacts)
	}
	for i, w := range ws {
		if (i > 0 || !kill) && w.p.Exited() {
			t.Errorf("a worker exited:\n%s", w.p.Output())
		}
	}
	order := "in order"
	if shuffled {
		order = "shuffled"
	}
	t.Logf("rate-limited backlog: %d worker(s)%s, %d events (%d posts) to %d contacts, %s, limit %d per %s: %d requests, %.2f per contact; drained in %s, ideal %s (%.2fx); %s",
		workers, map[bool]string{true: ", one killed", false: ""}[kill], n, len(h.posts), b.contacts, order, limit, window,
		b.requests, b.perContact(), b.took.Round(100*time.Millisecond), b.ideal, float64(b.took)/float64(b.ideal), b.f)
	t.Logf("windows from the workers' start (%s): %s", start.Format("15:04:05.000"), sortedWindows(r.sk))
	return b
}

// TestRateLimitedBacklogOneRequestPerContact is issue 19's scenario as
// separate processes: a backlog queued while no worker runs, drained by 1
// and by 3 workers, events in order and shuffled, on a key allowing 20
// requests per 10 s (60 contacts, 600 events; PATCHBAY_CRASH_LONG: the
// issue's 1,000 contacts and 10,000 events). Each contact with changes costs at most 1.1
// requests on average, the drain takes at most 1.2 times the ideal of one
// request per contact, and the replicas' shared assertions hold (no window
// over the limit, under 1% 429s, no overlap, last writers' state, nothing
// dead-lettered).
func TestRateLimitedBacklogOneRequestPerContact(t *testing.T) {
	contacts, n := size(60, 1000), size(600, 10000)
	limit, window := 20, 10*time.Second
	for _, tc := range []struct {
		workers  int
		shuffled bool
	}{{1, false}, {1, true}, {3, false}, {3, true}} {
		t.Run(fmt.Sprintf("workers=%d/shuffled=%v", tc.workers, tc.shuffled), func(t *testing.T) {
			b := runBacklog(t, tc.workers, contacts, n, tc.shuffled, false, limit, window)
			if b.perContact() > maxRequestsPerContact {
				t.Errorf("%d requests for %d contacts: %.2f per contact, want at most %.1f", b.requests, b.contacts, b.perContact(), maxRequestsPerContact)
			}
			if r := float64(b.took) / float64(b.ideal); r > maxDrainRatio {
				t.Errorf("drained in %s, %.2f times the ideal %s, want at most %.1f", b.took.Round(100*time.Millisecond), r, b.ideal, maxDrainRatio)
			}
		})
	}
}

// TestRateLimitedBacklogWorkerKilled drains the shuffled backlog with 3
// workers and SIGKILLs one a third of the way: still no window over the
// limit, under 1% 429s, no two requests to a contact at once, the last
// writers' state and nothing dead-lettered. Requests per contact and the
// drain time are reported: the killed worker's events wait for the ack
// wait and its partitions for the pinned TTL.
func TestRateLimitedBacklogWorkerKilled(t *testing.T) {
	contacts, n := size(60, 1000), size(600, 10000)
	b := runBacklog(t, 3, contacts, n, true, true, 20, 10*time.Second)
	if b.f.wireKnown && b.f.staleOnWire > 0 {
		t.Logf("%d PATCHes set a field to an older value than one already applied (a worker killed between the provider's 2xx and storing the clocks)", b.f.staleOnWire)
	}
}

// heldBy sums the events the consumers of target hold (delivered, not
// acknowledged): the target's consumer and its partition consumers.
func heldBy(ctx context.Context, js jetstream.JetStream, target string) (int, error) {
	s, err := js.Stream(ctx, rpEvents)
	if err != nil {
		return 0, err
	}
	held := 0
	infos := s.ListConsumers(ctx)
	for info := range infos.Info() {
		if name := info.Name; name == "patchbay-worker-"+target || strings.HasPrefix(name, "patchbay-worker-"+target+"-") {
			held += info.NumAckPending
		}
	}
	return held, infos.Err()
}
