package lww_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
)

// cluster starts a 3-node JetStream cluster on loopback and returns its
// servers, shut down when the test ends.
func cluster(t testing.TB) []*server.Server {
	t.Helper()
	return natstest.Cluster(t, "lww-test")
}

// connect returns a JetStream context on srv alone.
func connect(t testing.TB, srv *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestReadsOnReplicatedBucketAreCurrent puts a stale responder into the
// bucket's direct-get group, as a lagging follower is: a mirror of the
// bucket's stream with MirrorDirect that holds only the sentinel key, on
// the server the reading client is connected to (which prefers its own
// responders). Every Get, batched or alone, still returns the clocks last
// committed: an answer from a replica that has not applied the leader's
// last write is never used.
func TestReadsOnReplicatedBucketAreCurrent(t *testing.T) {
	srvs := cluster(t)
	ctx := natstest.Context(t)
	var s *lww.Store
	var js jetstream.JetStream
	for s == nil { // the first creation may race the meta leader's election
		js = connect(t, srvs[0])
		var err error
		if s, err = lww.NewStore(ctx, js, lww.StoreConfig{Replicas: 3}); err != nil {
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	mirror, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "STALE", Storage: jetstream.MemoryStorage, Replicas: 1, MirrorDirect: true,
		Mirror: &jetstream.StreamSource{Name: "KV_" + lww.DefaultBucket, FilterSubject: "$KV." + lww.DefaultBucket + "._patchbay_sentinel"},
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := mirror.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var home *server.Server
	for _, srv := range srvs {
		if srv.Name() == info.Cluster.Leader {
			home = srv
		}
	}
	if home == nil {
		t.Fatalf("mirror placed on %q", info.Cluster.Leader)
	}
	// The reader runs on the mirror's server.
	rjs := connect(t, home)
	r, err := lww.NewStore(ctx, rjs, lww.StoreConfig{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	const contacts = 40
	tgt := events.TargetRevyOps
	want := map[string]lww.Clock{}
	for i := range contacts {
		c := fmt.Sprint(i + 1)
		want[c] = at(i, "e")
		if _, err := s.Commit(ctx, tgt, c, lww.State{}, json.RawMessage(`{"email":"x@y.z"}`), map[string]lww.Clock{"email": want[c]}); err != nil {
			t.Fatal(err)
		}
	}
	waitMirrored(ctx, t, mirror)
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make(chan error, contacts)
		for c, w := range want {
			wg.Go(func() {
				st, err := r.Get(ctx, tgt, c)
				switch {
				case err != nil:
					errs <- err
				case !st.Fields["email"].Equal(w):
					errs <- fmt.Errorf("round %d: contact %s read %v, want %v (a stale replica answered)", round, c, st.Fields, w)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
	}
}

// waitMirrored waits until the mirror holds the sentinel: it answers
// direct gets.
func waitMirrored(ctx context.Context, t *testing.T, mirror jetstream.Stream) {
	t.Helper()
	for {
		info, err := mirror.Info(ctx)
		if err == nil && info.State.Msgs > 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("the mirror never got the sentinel")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
