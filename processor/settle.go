package processor

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/tracing"
	"github.com/patchbay/patchbay/stream"
)

// deadLetter publishes p to the dead-letter stream with reason and the
// provider's answer in cause, waits for the DLQ's acknowledgement, and only
// then terminates p. If the DLQ cannot be written, p is handed back for a
// later try: never dropped. ev is nil for a message that is not an event.
func (l *lane) deadLetter(ctx context.Context, p pending, ev *events.Event, reason dlq.Reason, cause error, attempts int, first time.Time) {
	now := l.w.now()
	if attempts == 0 {
		attempts = max(int(p.md.NumDelivered), 1)
	}
	if first.IsZero() {
		first = p.md.Timestamp
	}
	letter := dlq.Letter{
		Reason: reason, Detail: cause.Error(), Attempts: attempts, FirstAttempt: first, LastAttempt: now,
		Target: l.name, Data: p.msg.Data(), Stream: p.md.Stream, StreamSeq: p.seq,
		// The short form: a replay is partitioned again by the stream.
		Subject:     stream.CanonicalSubject(l.w.scfg.SubjectPrefix, p.msg.Subject()),
		Source:      p.msg.Headers().Get(stream.SourceHeader),
		Traceparent: p.msg.Headers().Get(tracing.HeaderTraceparent),
	}
	if ev != nil {
		letter.EventID = ev.ID
	} else {
		letter.EventID = p.msg.Headers().Get(jetstream.MsgIDHeader)
	}
	var pe *Error
	if errors.As(cause, &pe) {
		letter.Status, letter.ErrorCode, letter.ErrorMessage, letter.Excerpt = pe.Status, pe.Code, pe.Message, pe.Excerpt
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := l.w.dlq.Publish(pctx, letter); err != nil {
		l.w.log.Error("dead-letter publish failed; keeping the event for a later try", "err", err, "seq", p.seq, "provider", l.name)
		if err := p.msg.NakWithDelay(5 * time.Second); err != nil {
			l.w.log.Warn("nak failed; the event will be redelivered after the ack wait", "err", err, "seq", p.seq)
		}
		l.w.m.deliveries.WithLabelValues(l.name, "retry").Inc()
		l.w.m.retryDelay.WithLabelValues(l.name, "dlq_unavailable").Observe(5)
		return
	}
	if err := p.msg.Term(); err != nil {
		l.w.log.Warn("term after dead-lettering failed; a redelivery will be dead-lettered again (deduplicated)", "err", err, "seq", p.seq)
	}
	l.w.m.deadLetters.WithLabelValues(l.name, string(reason)).Inc()
	l.w.m.deliveries.WithLabelValues(l.name, "dead_lettered").Inc()
	if p.md.NumDelivered > 1 {
		l.w.attempts.forget(ctx, p.seq)
	}
}

// backoff is the delay after the given failed attempt: exponential with
// jitter, from the durable attempt count, so the schedule survives restarts
// and is the same whichever replica retries.
func (w *Worker) backoff(attempt int) time.Duration {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.cfg.BackoffInitial),
		backoff.WithMaxInterval(w.cfg.BackoffMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.3),
		backoff.WithMaxElapsedTime(0),
	)
	d := b.NextBackOff()
	// One step per attempt after the first, at most 63: BackoffMax is
	// reached long before, and an absurd count costs no time.
	for range min(attempt-1, 63) {
		d = b.NextBackOff()
	}
	return d
}
