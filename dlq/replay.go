package dlq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/patchbay/patchbay/events"
)

// HeaderReplayedFrom names, on a replayed event, the DLQ stream and
// sequence of the letter it came from ("PATCHBAY_DLQ:42").
const HeaderReplayedFrom = "Patchbay-Replayed-From"

// ReplayMsgID is the JetStream message id a replay of the letter at DLQ
// sequence seq is published with on the events stream. It is the same on
// every try, so the events stream's duplicate window drops a second publish
// of a letter whose first publish was acknowledged but not followed by the
// letter's deletion (an interrupted replay run again): each letter is
// enqueued once.
func ReplayMsgID(dlqStream string, seq uint64, eventID string) string {
	return fmt.Sprintf("replay:%s:%d:%s", dlqStream, seq, eventID)
}

// Replay puts the letters sel names back on the events stream, oldest
// first, at most opts.RateCap a second. For each letter it validates the
// payload (or opts.Edit) as an ingested event, reports the fields the
// Clocks set with SetClocks say are superseded, publishes it with
// ReplayMsgID, waits for the acknowledgement and only then deletes the
// letter. A run interrupted at any point and run again loses nothing and
// enqueues nothing twice.
//
// A letter that cannot be replayed (not a valid event, still unmapped, gone)
// is reported with OutcomeFailed and the rest go on. Replay returns an
// error, with the report of what was done so far, for ErrEmptySelection,
// ErrBadRequest, ErrInvalidEdit (wrapping the *events.ValidationError),
// ctx's error, or a publish or delete that NATS refused (the run stops:
// the next letters would fail the same way).
func (s *Store) Replay(ctx context.Context, sel Selection, opts ReplayOptions) (ReplayReport, error) {
	rep := ReplayReport{Results: []ReplayResult{}, DryRun: opts.DryRun}
	var edited *events.Event
	if opts.Edit != nil {
		if len(sel.Seqs) != 1 {
			return rep, fmt.Errorf("%w: an edited event replaces exactly one letter, not %d", ErrBadRequest, len(sel.Seqs))
		}
		if l, err := s.Show(ctx, sel.Seqs[0]); err == nil && l.Reason == ReasonUnmapped {
			return rep, fmt.Errorf("%w: letter %d is unmapped: replay it without an edit once its contact is mapped, or send the corrected event to ingest", ErrBadRequest, l.DLQSeq)
		}
		ev, err := events.Decode(opts.Edit)
		if err != nil {
			return rep, fmt.Errorf("%w: %w", ErrInvalidEdit, err)
		}
		edited = &ev
	}
	if opts.RateCap < 0 || math.IsNaN(opts.RateCap) {
		return rep, fmt.Errorf("%w: rate cap %v", ErrBadRequest, opts.RateCap)
	}
	seqs, err := s.selected(ctx, sel)
	if err != nil {
		return rep, err
	}
	limit := rate.NewLimiter(rate.Inf, 1)
	if opts.RateCap > 0 {
		limit = rate.NewLimiter(rate.Limit(opts.RateCap), 1)
	}
	for _, seq := range seqs {
		res, err := s.replayLetter(ctx, seq, edited, opts, limit)
		rep.Results = append(rep.Results, res)
		switch res.Outcome {
		case OutcomeReplayed, OutcomeWouldReplay:
			rep.Replayed++
		default:
			rep.Failed++
		}
		if opts.Progress != nil {
			opts.Progress(res)
		}
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// replayLetter replays one letter. A problem with the letter itself is in
// the result; an error is returned only when the run must stop.
func (s *Store) replayLetter(ctx context.Context, seq uint64, edited *events.Event, opts ReplayOptions, limit *rate.Limiter) (ReplayResult, error) {
	res := ReplayResult{Seq: seq, Outcome: OutcomeFailed}
	l, err := s.Show(ctx, seq)
	if errors.Is(err, ErrNotFound) {
		res.Error, res.cause = "not found: replayed or purged already", err
		return res, nil
	}
	if err != nil {
		res.Error = err.Error()
		return res, err
	}
	res.EventID, res.Target, res.ContactID = l.EventID, l.Target, l.ContactID()
	if l.Reason == ReasonUnmapped {
		return s.replayUnmappedLetter(ctx, l, res, edited != nil, opts.DryRun, limit)
	}
	data, subject := l.Data, l.Subject
	if edited != nil {
		data, subject = opts.Edit, edited.Subject(s.prefix)
	}
	ev, err := events.Decode(data)
	if err != nil {
		res.Error, res.cause = fmt.Sprintf("%v; correct it and replay it with an edited event", err), err
		return res, nil
	}
	if subject == "" || !strings.HasPrefix(subject, s.prefix+".patch.") {
		subject = ev.Subject(s.prefix)
	}
	res.EventID, res.Target, res.ContactID, res.Subject = ev.ID, string(ev.Target), ev.ContactID, subject
	if s.clocks != nil {
		// A failed read only costs the report: the worker checks again.
		if sup, err := s.clocks.Superseded(ctx, &ev); err == nil {
			res.Superseded = sup
		}
	}
	if opts.DryRun {
		res.Outcome = OutcomeWouldReplay
		return res, nil
	}
	if err := limit.Wait(ctx); err != nil {
		res.Error = err.Error()
		return res, err
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(HeaderReplayedFrom, fmt.Sprintf("%s:%d", s.stream, seq))
	if err := s.publishThenDelete(ctx, msg, ReplayMsgID(s.stream, seq, ev.ID), seq); err != nil {
		res.Error = err.Error()
		return res, err
	}
	res.Outcome = OutcomeReplayed
	return res, nil
}

// replayUnmappedLetter looks an unmapped letter's contact up again and
// publishes the mapped event under its own event id.
func (s *Store) replayUnmappedLetter(ctx context.Context, l Letter, res ReplayResult, edited, dryRun bool, limit *rate.Limiter) (ReplayResult, error) {
	switch {
	case edited:
		res.cause = fmt.Errorf("dlq: letter %d is unmapped: replay it without an edit once its contact is mapped, or send the corrected event to ingest", l.DLQSeq)
		res.Error = res.cause.Error()
		return res, nil
	case s.resolver == nil:
		res.cause = fmt.Errorf("dlq: letter %d is unmapped and no contact map is configured", l.DLQSeq)
		res.Error = res.cause.Error()
		return res, nil
	}
	subject, data, id, err := s.resolver.Resolve(ctx, l)
	if err != nil {
		err = fmt.Errorf("dlq: letter %d: %w", l.DLQSeq, err)
		res.Error, res.cause = err.Error(), err
		if errors.Is(err, ErrStillUnmapped) {
			return res, nil
		}
		return res, err
	}
	res.Subject = subject
	if dryRun {
		res.Outcome = OutcomeWouldReplay
		return res, nil
	}
	if err := limit.Wait(ctx); err != nil {
		res.Error = err.Error()
		return res, err
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(HeaderReplayedFrom, fmt.Sprintf("%s:%d", s.stream, l.DLQSeq))
	if l.Source != "" {
		msg.Header.Set(HeaderSource, l.Source) // the contact history names the event's source
	}
	if err := s.publishThenDelete(ctx, msg, id, l.DLQSeq); err != nil {
		res.Error = err.Error()
		return res, err
	}
	res.Outcome = OutcomeReplayed
	return res, nil
}

// publishThenDelete publishes msg with id, waits for JetStream's
// acknowledgement (a duplicate's included: an earlier try got through), and
// only then deletes the letter at seq.
func (s *Store) publishThenDelete(ctx context.Context, msg *nats.Msg, id string, seq uint64) error {
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("dlq: replay %d to %s: %w", seq, msg.Subject, err)
	}
	str, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", s.stream, err)
	}
	if _, err := deleteLetter(ctx, str, seq); err != nil {
		return fmt.Errorf("dlq: replayed %d but could not delete it: %w", seq, err)
	}
	return nil
}
