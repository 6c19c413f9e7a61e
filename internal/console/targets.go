package console

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/processor"
)

// WorkerTargets reads target states from a worker's rate budgets (which
// every replica shares through the pause records in KV) and the lag of
// each target's consumer from JetStream.
type WorkerTargets struct {
	// States is processor.Worker.States of the worker this console runs in.
	States func() []processor.TargetState
	JS     jetstream.JetStream
	Stream string // the events stream the consumers read
}

// TargetStates implements Targets. A consumer whose info cannot be read
// keeps its state, with the error in Err.
func (w WorkerTargets) TargetStates(ctx context.Context) ([]TargetState, error) {
	var out []TargetState
	for _, s := range w.States() {
		ts := TargetState{Target: s.Target, State: "running", Consumer: s.Consumer}
		if s.Paused {
			ts.State, ts.Reason, ts.Since, ts.Until = "paused", s.Reason, s.Since, s.Until
			if s.Kind == "credentials" {
				ts.State = "credentials"
			}
		}
		if err := w.lag(ctx, &ts); err != nil {
			ts.Err = err.Error()
		}
		out = append(out, ts)
	}
	return out, nil
}

func (w WorkerTargets) lag(ctx context.Context, ts *TargetState) error {
	// The target consumer's lag with its partition consumers'.
	info, err := processor.ConsumerLag(ctx, w.JS, w.Stream, ts.Consumer)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", ts.Consumer, err)
	}
	ts.Pending, ts.AckPending = info.NumPending, info.NumAckPending
	return nil
}
