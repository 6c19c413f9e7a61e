package console

import (
	"context"
	"time"

	"github.com/patchbay/patchbay/dlq"
)

// Query selects dead letters: every non-zero field must match. Pages run
// newest first; Before is the cursor (only letters with a smaller DLQ
// sequence), 0 for the first page.
type Query struct {
	Target    string
	Contact   string // the contact id at the target, or the source's contact id of an unmapped letter
	Reason    dlq.Reason
	Status    int
	ErrorCode string
	Since     time.Time // dead-lettered at or after
	Until     time.Time // dead-lettered before
	Before    uint64
	Limit     int
}

// Page is one page of a listing, newest first. Next is the cursor of the
// following page (0: this is the last).
type Page struct {
	Letters []dlq.Letter
	Next    uint64
}

// Count is how many letters match a query for one reason and target.
type Count struct {
	Reason dlq.Reason
	Target string
	N      int
}

// Letters is what the console needs of the dead-letter stream. The dlq
// package's store satisfies it through an adapter; tests use the same.
type Letters interface {
	// List returns one page of the letters q selects, newest first.
	List(ctx context.Context, q Query) (Page, error)
	// Summary counts the letters q selects (ignoring Before and Limit) by
	// reason and target.
	Summary(ctx context.Context, q Query) ([]Count, error)
	// Get returns the letter at DLQ sequence seq, or an error wrapping
	// dlq.ErrNotFound.
	Get(ctx context.Context, seq uint64) (dlq.Letter, error)
	// Replay puts the letter back on its original subject (with data
	// instead of its payload when data is not nil) and removes it.
	Replay(ctx context.Context, seq uint64, data []byte) error
	// Purge removes the letter for good.
	Purge(ctx context.Context, seq uint64) error
}

// TargetState is one target as the console shows it.
type TargetState struct {
	Target string
	// State is "running", "paused" (rate limit) or "credentials" (paused
	// until the provider accepts the key again).
	State  string
	Reason string
	Since  time.Time
	Until  time.Time // end of a rate-limit pause, or the next credentials probe
	// Consumer is the target's durable consumer; Pending and AckPending
	// are its lag: messages not yet delivered, and delivered but not yet
	// acknowledged.
	Consumer   string
	Pending    uint64
	AckPending int
	// Err says why the lag could not be read ("" when it could).
	Err string
}

// Targets reports the state of each target. The worker's per-target
// budgets and the consumers' info satisfy it (see WorkerTargets); the
// operator pause of issue 20 can replace it without the console changing.
type Targets interface {
	TargetStates(ctx context.Context) ([]TargetState, error)
}
