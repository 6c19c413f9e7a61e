package lww

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/stream"
)

// Defaults of StoreConfig.
const (
	// DefaultBucket is the KV bucket name.
	DefaultBucket = "PATCHBAY_LWW"
	// DefaultTTL is 32 days: longer than the events stream's default max
	// age (stream.Config.EventsMaxAge, 7 days) and than the dead-letter
	// stream's (DLQMaxAge, 30 days), whose events can be replayed with their
	// original occurred_at.
	DefaultTTL = 32 * 24 * time.Hour
	// DefaultMaxAttempts bounds Commit's compare-and-set attempts.
	DefaultMaxAttempts = 32
)

// StoreConfig configures a Store. The zero value of each field takes its
// default.
type StoreConfig struct {
	// Bucket is the KV bucket name (default DefaultBucket).
	Bucket string
	// Replicas of the bucket, 1..5 (default 1; 3 in a cluster, like the
	// streams).
	Replicas int
	// TTL is how long a contact's entry is kept after its last Commit
	// (default DefaultTTL). It bounds the state's size: contacts not
	// changed for TTL cost nothing. The trade-off: an entry not written for
	// TTL is forgotten, so an event older than a forgotten field's clock
	// wins again if it arrives after that. Keep TTL longer than any event
	// can wait: the events stream's MaxAge (stream.Config.EventsMaxAge), and
	// the dead-letter stream's (DLQMaxAge) if dead letters are replayed.
	TTL time.Duration
	// MaxAttempts bounds Commit's compare-and-set attempts under contention
	// (default DefaultMaxAttempts).
	MaxAttempts int
	// Publisher, if set, makes Commit's first compare-and-set a publish to
	// the bucket's stream with its PubAck read by hand, instead of
	// jetstream's KeyValue call (whose encoding/json read of the PubAck
	// is a measurable share of a worker's CPU). Retries after a conflict
	// go through the KeyValue, which also knows how to create a key over
	// a delete marker.
	Publisher *stream.Publisher
}

func (c *StoreConfig) setDefaults() {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
}

func (c StoreConfig) validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("lww: replicas %d out of range 1..5", c.Replicas)
	case c.TTL < 0:
		return fmt.Errorf("lww: TTL %s is negative", c.TTL)
	case c.MaxAttempts < 1:
		return fmt.Errorf("lww: MaxAttempts %d must be positive", c.MaxAttempts)
	}
	return nil
}

// Store keeps each (target, contact)'s field clocks in a NATS KV bucket, one
// entry per contact under the key "<target>.<contact>". Use NewStore; a
// Store is safe for concurrent use.
type Store struct {
	kv          jetstream.KeyValue
	maxAttempts int
	pub         *stream.Publisher
	subjects    string  // "$KV.<bucket>.", the subject of a key less the key
	reader      *reader // batches the Gets of concurrent deliveries
}

// NewStore creates the KV bucket described by cfg, or updates it to cfg if
// it exists, and returns a Store on it. It fails on an invalid cfg, or
// wrapping the jetstream error when the bucket cannot be created or
// updated (for example more replicas than servers).
func NewStore(ctx context.Context, js jetstream.JetStream, cfg StoreConfig) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	kv, err := stream.CreateOrUpdateKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "patchbay: per-field clocks of the values last applied to each contact (last-writer-wins)",
		History:     1,
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lww: bucket %s: %w", cfg.Bucket, err)
	}
	s := &Store{kv: kv, maxAttempts: cfg.MaxAttempts, pub: cfg.Publisher, subjects: "$KV." + cfg.Bucket + "."}
	if nc := js.Conn(); nc != nil {
		s.reader = &reader{nc: nc, stream: "KV_" + cfg.Bucket, prefix: s.subjects, single: s.get}
	}
	return s, nil
}

// Key returns the KV key of (target, contact): "<target>.<contact>". It
// fails, wrapping ErrInvalid, unless both are non-empty and made of the
// characters a KV key token allows (letters, digits, '-', '_', '=', '/'),
// as canonical contact ids are.
func Key(target events.Target, contact string) (string, error) {
	if !stream.KeyToken(string(target)) || !stream.KeyToken(contact) {
		return "", fmt.Errorf("%w: target %q and contact %q cannot form a KV key", ErrInvalid, target, contact)
	}
	return string(target) + "." + contact, nil
}

// Get returns the stored state of (target, contact): its field clocks and
// the revision they were read at. A contact without an entry (never
// committed, or expired) has an empty State with Revision 0. Get fails
// wrapping ErrInvalid (bad key), ErrCorrupt (undecodable value), or the
// jetstream error.
func (s *Store) Get(ctx context.Context, target events.Target, contact string) (State, error) {
	key, err := Key(target, contact)
	if err != nil {
		return State{}, err
	}
	if s.reader != nil {
		return s.reader.get(ctx, key)
	}
	return s.get(ctx, key)
}

func (s *Store) get(ctx context.Context, key string) (State, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	fields, err := decodeFields(e.Value())
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	return State{Fields: fields, Revision: e.Revision()}, nil
}

// Commit records, after the provider applied a PATCH (2xx), the clocks of
// the fields it applied: each field's stored clock becomes the newer of the
// stored and the applied one. st is the state the caller read (with Get)
// before the PATCH; the write is a compare-and-set on st.Revision (a create
// when it is 0). When another writer got in between, Commit re-reads, merges
// by the newer clock again and retries, up to StoreConfig.MaxAttempts
// attempts, then fails wrapping ErrConflict. Nothing is written when no
// applied clock is newer than the stored one. Commit also fails wrapping
// ErrInvalid, ErrCorrupt, ctx's error, or the jetstream error. st is not
// modified.
func (s *Store) Commit(ctx context.Context, target events.Target, contact string, st State, applied map[string]Clock) error {
	key, err := Key(target, contact)
	if err != nil {
		return err
	}
	cur := st
	for attempt := 1; ; attempt++ {
		merged, changed := maxClocks(cur.Fields, applied)
		if !changed {
			return nil
		}
		err = s.write(ctx, key, encodeFields(merged), cur.Revision, attempt == 1)
		if err == nil {
			return nil
		}
		if !casConflict(err) {
			return fmt.Errorf("lww: commit %s: %w", key, err)
		}
		if attempt >= s.maxAttempts {
			return fmt.Errorf("%w: %s: %d attempts: %v", ErrConflict, key, attempt, err)
		}
		if err := pause(ctx, attempt); err != nil {
			return fmt.Errorf("lww: commit %s: %w", key, err)
		}
		if cur, err = s.get(ctx, key); err != nil {
			return err
		}
	}
}

// write stores value at key if the key's revision is still rev (0: the key
// does not exist). first says it is Commit's first attempt, which may go
// through the Publisher.
func (s *Store) write(ctx context.Context, key string, value []byte, rev uint64, first bool) error {
	var err error
	switch {
	case first && s.pub != nil:
		w := casWrites.Get().(*casWrite)
		w.seq[0] = strconv.FormatUint(rev, 10)
		w.m.Subject, w.m.Data = s.subjects+key, value
		_, err = s.pub.PublishMsg(ctx, &w.m)
		w.m.Data, w.seq[0] = nil, ""
		casWrites.Put(w)
	case rev == 0:
		_, err = s.kv.Create(ctx, key, value)
	default:
		_, err = s.kv.Update(ctx, key, value, rev)
	}
	return err
}

// casWrite is the message of a compare-and-set write through the
// Publisher, and its header, reused from write to write: the Publisher
// encodes them as it sends and keeps neither once PublishMsg returns.
type casWrite struct {
	m   nats.Msg
	seq [1]string // the header's Nats-Expected-Last-Subject-Sequence
}

var casWrites = sync.Pool{New: func() any {
	w := &casWrite{}
	w.m.Header = nats.Header{jetstream.ExpectedLastSubjSeqHeader: w.seq[:]}
	return w
}}

// casConflict reports whether err is a lost compare-and-set: the key exists
// or has another revision. Replicated buckets report it with another code
// (10164) than single ones (10071), and Create over a delete marker returns
// the raw API error.
func casConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// maxClocks returns stored with every applied clock that is newer merged in,
// and whether any was. Neither stored nor applied is modified; the result
// may be applied itself (nothing stored), so it must not be modified either.
func maxClocks(stored, applied map[string]Clock) (map[string]Clock, bool) {
	if len(stored) == 0 {
		return applied, len(applied) > 0
	}
	var out map[string]Clock
	for name, c := range applied {
		if old, ok := stored[name]; ok && !c.After(old) {
			continue
		}
		if out == nil {
			out = make(map[string]Clock, len(stored)+len(applied))
			for n, sc := range stored {
				out[n] = sc
			}
		}
		out[name] = c
	}
	return out, out != nil
}

// pause waits a random time that grows with attempt (at most about 50ms),
// so that writers contending for one key spread out.
func pause(ctx context.Context, attempt int) error {
	limit := min(time.Duration(1<<min(attempt, 6))*time.Millisecond, 50*time.Millisecond)
	t := time.NewTimer(rand.N(limit) + time.Millisecond/4)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
