package processor

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
	// Once the target consumer is gone (nothing stored before the stream
	// was partitioned is left), the lag is the partition consumers'.
	if err := e.js.DeleteConsumer(ctx, c.EventsStream, c.TargetConsumer("skipcall")); err != nil {
		t.Fatal(err)
	}
	if info, err := ConsumerLag(ctx, e.js, c.EventsStream, c.TargetConsumer("skipcall")); err != nil || info.NumPending != 10 {
		t.Fatalf("lag of a partitioned target without its target consumer: %+v, %v; want 10 pending", info, err)
	}
	if info, err := ConsumerLag(ctx, e.js, c.EventsStream, c.TargetConsumer("nobody")); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("a target without consumers: %+v, %v", info, err)
	}
}
