package crashtest

import (
	"context"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestR3RestartedFollowerClocks is issue 18's second situation with real
// processes on a 3-node cluster with R3 streams and buckets: worker A is
// connected to a follower of the clock bucket only. That follower is
// stopped; meanwhile worker B (connected to the others) applies a newer
// event for a contact's city, committing its clock through the leader,
// and stops. The follower restarts and an older event for the same city
// is posted at once, delivered by A through it. The provider must end with
// the newer city: A's clock read is proven current (or, had the older
// value gone out, the commit's repair sends the newer one again).
func TestR3RestartedFollowerClocks(t *testing.T) {
	r := newRig(t)
	nodes := r.startCluster(t)
	env := map[string]string{"PATCHBAY_STREAM_REPLICAS": "3"}
	r.startIngest(env)
	o := newObserver(r)
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	p := &rpPoster{r: r}
	base := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	h := newHistory()
	contact := rpContact(1)
	post := func(ev *rpEvent) {
		h.add(ev)
		p.post(ctx, ev.payload)
	}
	cityIs := func(v string) func() bool {
		return func() bool { c, _ := r.sk.Contact(contact); return c["city"] == v }
	}

	// Worker B on the whole cluster creates the buckets and applies a
	// first value.
	bEnv := map[string]string{"PATCHBAY_STREAM_REPLICAS": "3", "PATCHBAY_WORKER_LEASE_TTL": leaseTTL.String()}
	wb := startWorkers(r, 1, bEnv)[0]
	post(&rpEvent{ID: "r3-first", Contact: contact, At: base, Fields: map[string]string{"city": "v-r3-first"}})
	waitUntil(t, time.Minute, "the first value applied", cityIs("v-r3-first"))

	// The clock bucket's leader and a follower.
	bucket := "KV_" + rpEvents + "_STATE"
	var follower *node
	waitUntil(t, time.Minute, "the clock bucket led, its replicas current", func() bool {
		follower = stateFollower(ctx, o.js, bucket, nodes)
		return follower != nil
	})
	t.Logf("clock bucket follower: %s", follower.name)

	// Worker A on the follower alone.
	aEnv := map[string]string{
		"PATCHBAY_STREAM_REPLICAS": "3", "PATCHBAY_WORKER_LEASE_TTL": leaseTTL.String(),
		"PATCHBAY_NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", follower.port),
	}
	wa := startWorkers(r, 1, aEnv)[0]
	// Both workers deliver for a moment: A's reads go to its follower.
	for i := range 20 {
		id := fmt.Sprintf("r3-warm-%02d", i)
		post(&rpEvent{ID: id, Contact: rpContact(100 + i), At: base, Fields: map[string]string{"company": "v-" + id}})
	}
	waitUntil(t, time.Minute, "the warm-up applied", func() bool { return o.msgs(rpEvents) == 0 })

	follower.stop()
	post(&rpEvent{ID: "r3-newer", Contact: contact, At: base.Add(2 * time.Hour), Fields: map[string]string{"city": "v-r3-newer"}})
	waitUntil(t, time.Minute, "the newer value applied by B", cityIs("v-r3-newer"))
	if err := wb.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := wb.p.Wait(30 * time.Second); err != nil {
		t.Fatalf("worker B did not stop: %v\n%s", err, wb.p.Output())
	}
	follower.start(t, nodes)
	post(&rpEvent{ID: "r3-older", Contact: contact, At: base.Add(time.Hour), Fields: map[string]string{"city": "v-r3-older"}})
	waitUntil(t, 2*time.Minute, "the older event settled", func() bool { return o.msgs(rpEvents) == 0 })
	// A repair, if any, goes out before the events are acknowledged;
	// give a late one the lease TTL all the same.
	deadline := time.Now().Add(leaseTTL)
	for !cityIs("v-r3-newer")() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	c, _ := r.sk.Contact(contact)
	stale, known := staleWrites(r.sk, h)
	repairs, _ := wa.metric(`patchbay_worker_repairs_total{reason="newer_clock",target="skipcall"}`)
	t.Logf("final city %v; PATCHes that set an older value on the wire: %d (known %v); repairs by A: %.0f; requests: %d",
		c["city"], stale, known, repairs, r.sk.StatusCounts()[http.StatusOK])
	if c["city"] != "v-r3-newer" {
		t.Errorf("the provider ended with city %v, want the newer v-r3-newer\nworker A:\n%s", c["city"], tail(wa.p))
	}
	if wa.p.Exited() {
		t.Errorf("worker A exited:\n%s", wa.p.Output())
	}
}

// stateFollower returns a node that is a current follower of stream name,
// or nil.
func stateFollower(ctx context.Context, js jetstream.JetStream, name string, nodes []*node) *node {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return nil
	}
	for _, rep := range info.Cluster.Replicas {
		if !rep.Current || rep.Offline {
			continue
		}
		for _, n := range nodes {
			if n.name == rep.Name && n.srv != nil {
				return n
			}
		}
	}
	return nil
}

// TestR3LaggingResponderClocks puts a replica that lags for good into the
// clock bucket's direct-get group: a mirror of the bucket's stream with
// MirrorDirect (as a backup mirror may be set up) that holds none of the
// contacts, on the server worker A alone is connected to, whose own
// responders the server prefers. Worker B applies a newer city for ten
// contacts and stops; then an older city for each is delivered by A. The
// provider must end with every newer city. (A restarted follower, above,
// rejoins the direct-get group only once it has caught up, on nats-server
// 2.15; a follower that lags under load does not leave it. The mirror is a
// lagging responder that stays behind.)
func TestR3LaggingResponderClocks(t *testing.T) {
	r := newRig(t)
	nodes := r.startCluster(t)
	env := map[string]string{"PATCHBAY_STREAM_REPLICAS": "3", "PATCHBAY_WORKER_LEASE_TTL": leaseTTL.String()}
	r.startIngest(env)
	o := newObserver(r)
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	p := &rpPoster{r: r}
	base := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	h := newHistory()
	post := func(ev *rpEvent) {
		h.add(ev)
		p.post(ctx, ev.payload)
	}
	wb := startWorkers(r, 1, env)[0]
	const contacts = 10
	post(&rpEvent{ID: "r3l-mirrored", Contact: rpContact(99), At: base, Fields: map[string]string{"city": "v-r3l-mirrored"}})
	for i := range contacts {
		id := fmt.Sprintf("r3l-first-%02d", i)
		post(&rpEvent{ID: id, Contact: rpContact(i), At: base, Fields: map[string]string{"city": "v-" + id}})
	}
	waitUntil(t, time.Minute, "the first values applied", func() bool { return o.msgs(rpEvents) == 0 && mismatches(t, r.sk, h, false) == 0 })

	bucket := "KV_" + rpEvents + "_STATE"
	mirror, err := o.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "STATE_MIRROR", Storage: jetstream.MemoryStorage, Replicas: 1, MirrorDirect: true,
		// It mirrors one contact of its own: it answers direct gets once
		// it holds a message.
		Mirror: &jetstream.StreamSource{Name: bucket, FilterSubject: "$KV." + rpEvents + "_STATE.skipcall." + rpContact(99)},
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := mirror.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("mirror info: %v, %v", info, err)
	}
	var home *node
	for _, n := range nodes {
		if n.name == info.Cluster.Leader {
			home = n
		}
	}
	if home == nil {
		t.Fatalf("mirror placed on %q", info.Cluster.Leader)
	}
	t.Logf("lagging mirror on %s", home.name)
	waitUntil(t, time.Minute, "the mirror holding its contact", func() bool {
		info, err := mirror.Info(ctx)
		return err == nil && info.State.Msgs > 0
	})
	aEnv := map[string]string{
		"PATCHBAY_STREAM_REPLICAS": "3", "PATCHBAY_WORKER_LEASE_TTL": leaseTTL.String(),
		"PATCHBAY_NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", home.port),
	}
	wa := startWorkers(r, 1, aEnv)[0]
	for i := range contacts {
		id := fmt.Sprintf("r3l-newer-%02d", i)
		post(&rpEvent{ID: id, Contact: rpContact(i), At: base.Add(2 * time.Hour), Fields: map[string]string{"city": "v-" + id}})
	}
	waitUntil(t, time.Minute, "the newer values applied", func() bool { return o.msgs(rpEvents) == 0 && mismatches(t, r.sk, h, false) == 0 })
	if err := wb.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := wb.p.Wait(30 * time.Second); err != nil {
		t.Fatalf("worker B did not stop: %v\n%s", err, wb.p.Output())
	}
	for i := range contacts {
		id := fmt.Sprintf("r3l-older-%02d", i)
		post(&rpEvent{ID: id, Contact: rpContact(i), At: base.Add(time.Hour), Fields: map[string]string{"city": "v-" + id}})
	}
	waitUntil(t, 2*time.Minute, "the older events settled", func() bool { return o.msgs(rpEvents) == 0 })
	deadline := time.Now().Add(leaseTTL)
	for mismatches(t, r.sk, h, false) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stale, known := staleWrites(r.sk, h)
	repairs, _ := wa.metric(`patchbay_worker_repairs_total{reason="newer_clock",target="skipcall"}`)
	bad := mismatches(t, r.sk, h, true)
	t.Logf("%d contacts: %d stale fields at the end; PATCHes that set an older value on the wire: %d (known %v); repairs by A: %.0f",
		contacts, bad, stale, known, repairs)
	if bad > 0 {
		t.Errorf("%d of %d contacts ended with the older city", bad, contacts)
	}
	if wa.p.Exited() {
		t.Errorf("worker A exited:\n%s", wa.p.Output())
	}
}
