package dlq

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Store reads and replays the dead-letter stream.
type Store struct {
	js       jetstream.JetStream
	stream   string
	prefix   string
	resolver Resolver
	clocks   Clocks
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

// ListSubject returns up to limit dead letters (oldest first) whose subject
// matches filter (a NATS subject pattern; "" means all). List pages newest
// first with a Filter.
func (s *Store) ListSubject(ctx context.Context, filter string, limit int) ([]Letter, error) {
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

// Show returns the dead letter stored at DLQ sequence seq, with every
// header and the original payload. ErrNotFound if none.
func (s *Store) Show(ctx context.Context, seq uint64) (Letter, error) {
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

// ReplayOne replays the dead letter at DLQ sequence seq, with data
// replacing the payload when non-nil (an operator's fix): Replay for one
// letter, whose failure is returned as an error (ErrNotFound, ErrInvalidEdit,
// ErrStillUnmapped, an invalid stored event, or the NATS error).
func (s *Store) ReplayOne(ctx context.Context, seq uint64, data []byte) error {
	rep, err := s.Replay(ctx, Selection{Seqs: []uint64{seq}}, ReplayOptions{Edit: data})
	if err != nil {
		return err
	}
	if r := rep.Results[0]; r.Outcome != OutcomeReplayed {
		if r.cause != nil {
			return r.cause
		}
		return errors.New(r.Error)
	}
	return nil
}
