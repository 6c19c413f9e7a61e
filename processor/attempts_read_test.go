package processor

import (
	"testing"
	"time"
)

// TestAttemptsReadFailureIsAnError: when the attempts bucket cannot be read
// (here it was deleted), add says so instead of counting from zero: the
// caller then falls back to JetStream's delivery count.
func TestAttemptsReadFailureIsAnError(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t)
	ctx := testCtx(t)
	a, err := newAttempts(ctx, e.js, "ATTEMPTS_READ", 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n, _, err := a.add(ctx, 7, time.Now()); err != nil || n != 1 {
		t.Fatalf("first add: %d, %v; want 1", n, err)
	}
	if err := e.js.DeleteKeyValue(ctx, "ATTEMPTS_READ"); err != nil {
		t.Fatal(err)
	}
	if n, first, err := a.add(ctx, 7, time.Now()); err == nil || n != 0 || !first.IsZero() {
		t.Fatalf("add on a deleted bucket: %d, %s, %v; want an error", n, first, err)
	}
}
