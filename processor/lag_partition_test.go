package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/patchbay/patchbay/stream"
)

// TestConsumerLagSumsThePartitions: a partitioned target's lag is its
// target consumer's plus its partition consumers'.
func TestConsumerLagSumsThePartitions(t *testing.T) {
	e := startEmbedded(t)
	ctx := testCtx(t)
	c := e.scfg
	c.Partitions = 4
	if err := stream.Ensure(ctx, e.js, c); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateOrUpdateConsumer(ctx, c.EventsStream, c.TargetConsumerConfig("skipcall", time.Minute, 100)); err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		if _, err := e.js.CreateOrUpdateConsumer(ctx, c.EventsStream, c.PartitionConsumerConfig("skipcall", p, time.Minute, time.Minute, 100)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if _, err := e.js.Publish(ctx, fmt.Sprintf("contacts.patch.skipcall.c-%d", i), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := ConsumerLag(ctx, e.js, c.EventsStream, c.TargetConsumer("skipcall"))
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 10 {
		t.Fatalf("lag of a partitioned target: %d pending, want 10", info.NumPending)
	}
	if info, err := ConsumerLag(ctx, e.js, c.EventsStream, c.TargetConsumer("revyops")); err == nil {
		t.Fatalf("revyops, never declared: %+v", info)
	}
}
