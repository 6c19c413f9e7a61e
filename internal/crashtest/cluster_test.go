package crashtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/proc"
	"github.com/patchbay/patchbay/stream"
)

// node is one server of a 3-node JetStream cluster on loopback.
type node struct {
	name       string
	port, cprt int
	dir        string
	srv        *server.Server
}

func freePort(t *testing.T) int {
	t.Helper()
	a, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(a[strings.LastIndexByte(a, ':')+1:])
	return p
}

func (n *node) start(t *testing.T, all []*node) {
	t.Helper()
	var routes []string
	for _, o := range all {
		if o != n {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.cprt))
		}
	}
	opts := &server.Options{
		ServerName: n.name, Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir, NoSigs: true, NoLog: true,
		Cluster: server.ClusterOpts{Name: "patchbay-test", Host: "127.0.0.1", Port: n.cprt},
		Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(budget(t)) {
		t.Fatalf("%s not ready", n.name)
	}
	n.srv = srv
}

func (n *node) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// consumersLed reports whether every consumer of the events stream has a
// leader.
func consumersLed(ctx context.Context, js jetstream.JetStream) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "PATCHBAY_EVENTS")
	if err != nil {
		return false
	}
	l := s.ListConsumers(ctx)
	n := 0
	for ci := range l.Info() {
		if ci.Cluster == nil || ci.Cluster.Leader == "" {
			return false
		}
		n++
	}
	return l.Err() == nil && n > 0
}

// startCluster replaces the rig's NATS server with a 3-node JetStream
// cluster on loopback, points the rig at it and returns its nodes, stopped
// when the test ends.
func (r *rig) startCluster(t *testing.T) []*node {
	t.Helper()
	r.stopNATS()
	nodes := make([]*node, 3)
	var urls []string
	for i := range nodes {
		nodes[i] = &node{name: fmt.Sprintf("n%d", i+1), port: freePort(t), cprt: freePort(t), dir: t.TempDir()}
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].port))
	}
	for _, n := range nodes {
		n.start(t, nodes)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop()
		}
	})
	r.url = strings.Join(urls, ",")
	return nodes
}

// TestClusterLeaderLoss runs ingest and worker against a 3-node cluster with
// R3 streams, kills the stream leader under load, brings it back, then kills
// the new leader: ingest keeps accepting with brief 503s at most and nothing
// acknowledged is lost.
func TestClusterLeaderLoss(t *testing.T) {
	r := newRig(t)
	nodes := r.startCluster(t) // this scenario has its own servers
	clusterURL := r.url

	env := map[string]string{"PATCHBAY_STREAM_REPLICAS": "3"}
	r.startIngest(env)
	r.startWorker(env)
	r.arm()

	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	nc, err := stream.Connect(ctx, clusterURL, "", "crashtest-observer")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leader := func() *node {
		ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
		defer icancel()
		s, err := js.Stream(ictx, "PATCHBAY_EVENTS")
		if err != nil {
			return nil
		}
		info, err := s.Info(ictx)
		if err != nil || info.Cluster == nil {
			return nil
		}
		for _, n := range nodes {
			if n.name == info.Cluster.Leader && n.srv != nil {
				return n
			}
		}
		return nil
	}

	n := size(1500, 20000)
	wg := r.load(ctx, 0, n, 16)
	start := time.Now()
	// The faults hit a worker that is delivering, not one still setting up
	// its consumers and buckets.
	r.waitUntil("the worker delivering", func() bool { return r.countApplied(n) > 0 })
	for round := range 2 {
		r.waitUntil("load under way", func() bool { return r.acceptedCount() >= (round+1)*n/4 })
		var l *node
		r.waitUntil("a stream leader", func() bool { l = leader(); return l != nil })
		t.Logf("round %d: killing stream leader %s", round+1, l.name)
		r.disarm()
		l.stop()
		r.waitUntil("a new stream leader", func() bool { return leader() != nil })
		l.start(t, nodes)
		r.waitUntil("every consumer led", func() bool { return consumersLed(ctx, r.jetStream()) })
		r.armAfterNATSFault() // stream and consumers are led again: the worker must follow them
	}
	wg.Wait()
	if r.ingest.Exited() || r.worker.Exited() {
		t.Fatalf("a process died\ningest:\n%s\nworker:\n%s", r.ingest.Output(), r.worker.Output())
	}
	r.report("3-node R3 cluster, stream leader killed twice", n, time.Since(start))
}
