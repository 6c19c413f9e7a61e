package console

import (
	"context"
	"time"

	"github.com/patchbay/patchbay/dlq"
)

// Letters is what the console needs of the dead-letter stream: the dlq
// package's operator API, which the CLI and the admin API use too, so the
// three show one model. *dlq.Store satisfies it.
type Letters interface {
	List(ctx context.Context, f dlq.Filter, page dlq.Page) (dlq.ListResult, error)
	Summary(ctx context.Context, f dlq.Filter) (dlq.Summary, error)
	Show(ctx context.Context, seq uint64) (dlq.Letter, error)
	Replay(ctx context.Context, sel dlq.Selection, opts dlq.ReplayOptions) (dlq.ReplayReport, error)
	Purge(ctx context.Context, sel dlq.Selection, opts dlq.PurgeOptions) (dlq.PurgeReport, error)
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
