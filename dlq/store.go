package dlq

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Store reads and replays the dead-letter stream.
type Store struct {
	js       jetstream.JetStream
	stream   string
	prefix   string
	resolver Resolver
}

// ErrStillUnmapped is wrapped by Replay when an unmapped letter's contact
// still has no mapping; the letter stays in the DLQ.
var ErrStillUnmapped = errors.New("dlq: contact still unmapped")

// Resolver turns an unmapped letter into the event to publish, looking the
// source contact id up again. It returns the subject, payload and message
// id, or an error wrapping ErrStillUnmapped.
type Resolver interface {
	Resolve(ctx context.Context, l Letter) (subject string, data []byte, msgID string, err error)
}

// SetResolver lets Replay resolve unmapped letters with r.
func (s *Store) SetResolver(r Resolver) { s.resolver = r }

// NewStore returns a Store over the dead-letter stream named stream, whose
// subjects start with <prefix>.dlq.
func NewStore(js jetstream.JetStream, stream, prefix string) *Store {
	return &Store{js: js, stream: stream, prefix: prefix}
}

// List returns up to limit dead letters (oldest first) whose subject matches
// filter (a NATS subject pattern; "" means all).
func (s *Store) List(ctx context.Context, filter string, limit int) ([]Letter, error) {
	if filter == "" {
		filter = s.prefix + ".dlq.>"
	}
	if limit <= 0 {
		limit = 100
	}
	str, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", s.stream, err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dlq: stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("dlq: ordered consumer: %w", err)
	}
	var out []Letter
	for len(out) < limit {
		batch, err := cons.FetchNoWait(min(limit-len(out), 256))
		if err != nil {
			return nil, fmt.Errorf("dlq: fetch: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("dlq: metadata: %w", err)
			}
			out = append(out, FromMsg(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data()))
			if md.NumPending == 0 {
				return out, batch.Error()
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("dlq: fetch: %w", err)
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// Get returns the dead letter stored at DLQ sequence seq. ErrNotFound if none.
func (s *Store) Get(ctx context.Context, seq uint64) (Letter, error) {
	str, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return Letter{}, fmt.Errorf("dlq: stream %s: %w", s.stream, err)
	}
	raw, err := str.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Letter{}, fmt.Errorf("%w: sequence %d", ErrNotFound, seq)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("dlq: get %d: %w", seq, err)
	}
	return FromMsg(raw.Subject, raw.Sequence, raw.Time, raw.Header, raw.Data), nil
}

// Replay puts the dead letter at DLQ sequence seq back on its original
// subject, with data replacing the payload when non-nil (an operator's fix),
// waits for JetStream's acknowledgement, then deletes the dead letter. The
// republished message's id is derived from the DLQ sequence, so a replay
// repeated after a crash enqueues the event once.
func (s *Store) Replay(ctx context.Context, seq uint64, data []byte) error {
	l, err := s.Get(ctx, seq)
	if err != nil {
		return err
	}
	if l.Reason == ReasonUnmapped {
		if data != nil {
			// Its subject is a placeholder: the contact is not known yet.
			return fmt.Errorf("dlq: letter %d is unmapped: replay it without a corrected payload once its contact is mapped, or send the corrected event to ingest", seq)
		}
		return s.replayUnmapped(ctx, l)
	}
	if l.Subject == "" {
		return fmt.Errorf("dlq: letter %d has no original subject", seq)
	}
	msg := nats.NewMsg(l.Subject)
	msg.Data = l.Data
	if data != nil {
		msg.Data = data
	}
	msg.Header.Set("Patchbay-Replayed-From", fmt.Sprintf("%s:%d", s.stream, seq))
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(fmt.Sprintf("replay:%s:%d", s.stream, seq))); err != nil {
		return fmt.Errorf("dlq: replay %d to %s: %w", seq, l.Subject, err)
	}
	str, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", s.stream, err)
	}
	if err := str.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dlq: replayed %d but could not delete it: %w", seq, err)
	}
	return nil
}

// replayUnmapped resolves an unmapped letter's contact id and publishes the
// mapped event with its own event id as message id (a provider retry that
// was mapped meanwhile is stored once), then deletes the letter. A letter
// still unmapped stays.
func (s *Store) replayUnmapped(ctx context.Context, l Letter) error {
	if s.resolver == nil {
		return fmt.Errorf("dlq: letter %d is unmapped and no contact map is configured", l.DLQSeq)
	}
	subject, data, id, err := s.resolver.Resolve(ctx, l)
	if err != nil {
		return fmt.Errorf("dlq: letter %d: %w", l.DLQSeq, err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set("Patchbay-Replayed-From", fmt.Sprintf("%s:%d", s.stream, l.DLQSeq))
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("dlq: replay %d to %s: %w", l.DLQSeq, subject, err)
	}
	str, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", s.stream, err)
	}
	if err := str.DeleteMsg(ctx, l.DLQSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dlq: replayed %d but could not delete it: %w", l.DLQSeq, err)
	}
	return nil
}
