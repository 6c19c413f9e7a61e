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
	js     jetstream.JetStream
	stream string
	prefix string
}

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
