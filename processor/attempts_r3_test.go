package processor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
)

// TestAttemptsCountOnReplicatedBucket: on a 3-replica bucket a lost
// compare-and-set comes back as JetStream error 10164 (wrong last
// sequence), not ErrKeyExists. Concurrent failed calls of one event are
// each counted once (1..n, none lost to an error), as on one replica.
func TestAttemptsCountOnReplicatedBucket(t *testing.T) {
	nc := clusterConn(t)
	ctx := natstest.Context(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var a *attempts
	for a == nil { // the first creation may race the meta leader's election
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		a, err = newAttempts(tctx, js, "ATTEMPTS_R3", 3, time.Hour)
		cancel()
		if err != nil {
			t.Log(err)
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	const calls = 5
	var mu sync.Mutex
	var got []int
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			n, _, err := a.add(ctx, 42, time.Now())
			if err != nil {
				t.Errorf("add: %v", err)
				return
			}
			mu.Lock()
			got = append(got, n)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(got)
	if !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("counts %v, want 1..%d", got, calls)
	}
}

// TestCASConflictClassification: the codes a lost compare-and-set comes
// back with are conflicts; other API errors are not.
func TestCASConflictClassification(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{jetstream.ErrKeyExists, true},
		{fmt.Errorf("wrapped: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}), true},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabled}, false},
		{nats.ErrTimeout, false},
	} {
		if got := casConflict(tc.err); got != tc.want {
			t.Errorf("casConflict(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// clusterConn starts a 3-node JetStream cluster on loopback and returns a
// connection to it.
func clusterConn(t *testing.T) *nats.Conn {
	t.Helper()
	srvs := natstest.Cluster(t, "attempts-test")
	nc, err := nats.Connect(srvs[0].ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
