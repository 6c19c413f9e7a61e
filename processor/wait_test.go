package processor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
)

// TestWaitWaitsOrEndsWithItsContext guards Wait's promise, on which every
// retry loop's pace rests (the fetcher's pause and NATS outage waits, the
// worker's and the services' reconnect backoff): it blocks until d has
// passed and returns nil; it returns ctx's error at once when ctx is done,
// whatever d; and a d of zero or less does not wait.
func TestWaitWaitsOrEndsWithItsContext(t *testing.T) {
	t.Parallel()
	const d = 60 * time.Millisecond
	start := time.Now()
	if err := processor.Wait(context.Background(), d); err != nil {
		t.Fatalf("Wait(%s) = %v, want nil", d, err)
	}
	if took := time.Since(start); took < d {
		t.Fatalf("Wait(%s) returned after %s: it did not wait", d, took)
	}

	for _, zero := range []time.Duration{0, -time.Second} {
		start = time.Now()
		if err := processor.Wait(context.Background(), zero); err != nil {
			t.Fatalf("Wait(%s) = %v, want nil", zero, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("Wait(%s) took %s, want no wait", zero, took)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Repeated: a zero wait must not race its timer against ctx.
	for _, wait := range []time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, time.Hour} {
		start = time.Now()
		if err := processor.Wait(ctx, wait); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait(cancelled, %s) = %v, want context.Canceled", wait, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("Wait(cancelled, %s) took %s, want an immediate return", wait, took)
		}
	}
}
