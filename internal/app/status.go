package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/stream"
)

// StatusReport is what 'patchbay status', the admin API's
// /admin/v1/status and the console show: the streams, every target's
// state and consumer lag, and the dead letters by target and reason.
type StatusReport struct {
	At          time.Time      `json:"at"`
	Streams     []StreamStatus `json:"streams"`
	Targets     []TargetStatus `json:"targets"`
	DeadLetters []LetterCount  `json:"dead_letters"`
	// DeadLettersScanned is false when the dead letters were too many to
	// count within the request's time: the counts are then a lower bound.
	DeadLettersScanned bool `json:"dead_letters_scanned"`
}

// StreamStatus is one JetStream stream.
type StreamStatus struct {
	Name      string `json:"name"`
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	Replicas  int    `json:"replicas"`
	Consumers int    `json:"consumers"`
	Error     string `json:"error,omitempty"`
}

// TargetStatus is one target: its delivery state, shared by every worker
// replica, and its consumer's lag.
type TargetStatus struct {
	Target string `json:"target"`
	// State is "running", "paused", or "unknown" when no worker has run
	// with this target yet.
	State string `json:"state"`
	// Detail says the state in words: "paused by hand by alice at …:
	// reason", "paused for rate limit until …", "paused for credentials
	// (next probe …)".
	Detail string `json:"detail"`
	// Budgets are the target's shared rate budgets (one per API key it
	// was run with) as NATS holds them.
	Budgets []ratelimit.State `json:"budgets"`
	// Consumer and its lag: Pending not yet delivered to a worker,
	// AckPending delivered and not yet settled.
	Consumer    string `json:"consumer"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
	Error       string `json:"error,omitempty"`
}

// LetterCount is how many dead letters a target has for one reason.
type LetterCount struct {
	Target string     `json:"target"`
	Reason dlq.Reason `json:"reason"`
	Count  int        `json:"count"`
}

// Status reads the report from NATS. A part that cannot be read is
// reported in its Error field; an error is returned only when nothing can
// be read.
func Status(ctx context.Context, js jetstream.JetStream, scfg stream.Config) (StatusReport, error) {
	r := StatusReport{At: time.Now().UTC()}
	for _, name := range []string{scfg.EventsStream, scfg.DLQStream} {
		ss := StreamStatus{Name: name}
		str, err := js.Stream(ctx, name)
		if err == nil {
			info := str.CachedInfo()
			ss.Messages, ss.Bytes, ss.Replicas, ss.Consumers = info.State.Msgs, info.State.Bytes, info.Config.Replicas, info.State.Consumers
		} else {
			ss.Error = err.Error()
		}
		r.Streams = append(r.Streams, ss)
	}
	if r.Streams[0].Error != "" && r.Streams[1].Error != "" {
		return r, fmt.Errorf("status: streams unavailable: %s", r.Streams[0].Error)
	}
	var budgets []ratelimit.State
	var budgetErr error
	op, err := ratelimit.NewOperator(ctx, js, scfg.KVBucket("RATE"))
	if err == nil {
		budgets, budgetErr = op.States(ctx)
	} else if !errors.Is(err, ratelimit.ErrUnknownTarget) {
		budgetErr = err
	}
	for _, t := range events.Targets() {
		ts := TargetStatus{Target: string(t), Consumer: scfg.TargetConsumer(string(t)), Budgets: []ratelimit.State{}}
		for _, b := range budgets {
			if b.Target == string(t) {
				ts.Budgets = append(ts.Budgets, b)
			}
		}
		ts.State, ts.Detail = targetState(ts.Budgets)
		if budgetErr != nil {
			ts.State, ts.Detail, ts.Error = "unknown", "rate budgets unavailable", budgetErr.Error()
		}
		if info, err := processor.ConsumerLag(ctx, js, scfg.EventsStream, ts.Consumer); err == nil {
			ts.Pending, ts.AckPending, ts.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
		} else if errors.Is(err, jetstream.ErrConsumerNotFound) {
			if ts.State == "unknown" && ts.Error == "" {
				ts.Detail = "no worker has run with this target yet"
			}
		} else {
			ts.Error = strings.TrimPrefix(ts.Error+"; "+err.Error(), "; ")
		}
		r.Targets = append(r.Targets, ts)
	}
	r.DeadLetters, r.DeadLettersScanned = countLetters(ctx, js, scfg.DLQStream)
	return r, nil
}

// targetState sums up a target's budgets: a pause by hand first, then
// credentials, then a rate limit.
func targetState(bs []ratelimit.State) (state, detail string) {
	if len(bs) == 0 {
		return "unknown", "no rate budget in NATS: no worker has run with this target yet"
	}
	rank := map[string]int{"manual": 0, "credentials": 1, "rate_limit": 2}
	var paused []ratelimit.State
	for _, b := range bs {
		if b.Paused {
			paused = append(paused, b)
		}
	}
	if len(paused) == 0 {
		return "running", "running"
	}
	slices.SortStableFunc(paused, func(a, b ratelimit.State) int { return rank[a.Kind] - rank[b.Kind] })
	p := paused[0]
	const ts = time.RFC3339
	switch p.Kind {
	case "manual":
		detail = fmt.Sprintf("paused by hand by %s at %s", orUnknown(p.By), p.Since.UTC().Format(ts))
		if p.Reason != "" {
			detail += ": " + p.Reason
		}
	case "credentials":
		detail = fmt.Sprintf("paused for credentials since %s (next probe %s): %s", p.Since.UTC().Format(ts), p.Until.UTC().Format(ts), p.Reason)
	default:
		detail = fmt.Sprintf("paused for rate limit until %s", p.Until.UTC().Format(ts))
	}
	return "paused", detail
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// countLetters counts the dead letters per target and reason, reading
// their headers only; it stops at ctx's end (complete false).
func countLetters(ctx context.Context, js jetstream.JetStream, name string) ([]LetterCount, bool) {
	out := []LetterCount{}
	str, err := js.Stream(ctx, name)
	if err != nil || str.CachedInfo().State.Msgs == 0 {
		return out, err == nil
	}
	// An ephemeral consumer of headers only, removed at the end (and by
	// the server after a minute, should this process die first).
	cons, err := str.CreateConsumer(ctx, jetstream.ConsumerConfig{
		HeadersOnly: true, AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute, MemoryStorage: true, Replicas: 1,
	})
	if err != nil {
		return out, false
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = str.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	counts := map[[2]string]int{}
	complete := false
	for !complete && ctx.Err() == nil {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		n := 0
		for m := range batch.Messages() {
			n++
			h := m.Headers()
			counts[[2]string{h.Get(dlq.HeaderTarget), h.Get(dlq.HeaderReason)}]++
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				complete = true
			}
		}
		if n == 0 {
			break
		}
	}
	for k, n := range counts {
		out = append(out, LetterCount{Target: k[0], Reason: dlq.Reason(k[1]), Count: n})
	}
	slices.SortFunc(out, func(a, b LetterCount) int {
		if c := strings.Compare(a.Target, b.Target); c != 0 {
			return c
		}
		return strings.Compare(string(a.Reason), string(b.Reason))
	})
	return out, complete
}
