package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// Defaults for the NATS names a Budget uses; Config overrides them.
const (
	// DefaultBucket is the KV bucket holding each budget's window and pause.
	DefaultBucket = "PATCHBAY_RATELIMIT"
	// DefaultCounterStream is the JetStream counter stream holding the
	// number of requests granted per budget and window.
	DefaultCounterStream = "PATCHBAY_RATELIMIT_COUNTS"
	// DefaultCounterSubject prefixes the counter subjects:
	// <prefix>.<budget id>.<window id>.
	DefaultCounterSubject = "patchbay.ratelimit"
	// counterMaxAge is how long a window's counter is kept after its last
	// increment: far longer than any window, so a window's count is never
	// lost while the window runs.
	counterMaxAge = time.Hour
)

// incrHeader is the JetStream counter header (nats-server 2.12+): the
// server adds its value to the subject's counter and answers the new total
// in the PubAck.
const incrHeader = "Nats-Incr"

// budgetID names a budget in NATS without revealing its API key: the first
// 16 bytes of SHA-256 over the target name and the key, in hex. The same
// key used by two targets of the same name shares one budget.
func budgetID(name, key string) string {
	h := sha256.Sum256([]byte(name + "\x00" + key))
	return hex.EncodeToString(h[:16])
}

// store is the NATS side of a Budget: the KV bucket (window and pause
// records, watched) and the counter stream (one counter per window).
type store struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	counts  jetstream.Stream
	subject string // <prefix>.<budget id>
}

// openStore creates or updates the bucket and the counter stream.
func openStore(ctx context.Context, js jetstream.JetStream, cfg Config, id string) (*store, error) {
	kv, err := stream.CreateOrUpdateKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "patchbay: shared rate-limit windows and pauses per provider key",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: bucket %s: %w", cfg.Bucket, err)
	}
	counts, err := stream.CreateOrUpdateStream(ctx, js, jetstream.StreamConfig{
		Name:              cfg.CounterStream,
		Description:       "patchbay: requests granted per provider key and window (JetStream counters)",
		Subjects:          []string{cfg.CounterSubject + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            max(counterMaxAge, 4*cfg.Window),
		MaxMsgsPerSubject: 1,
		AllowMsgCounter:   true,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: counter stream %s: %w", cfg.CounterStream, err)
	}
	return &store{js: js, kv: kv, counts: counts, subject: cfg.CounterSubject + "." + id}, nil
}

// incr adds n to the counter of window and returns the new total. It is one
// request-reply to the stream leader: the server serialises increments, so
// concurrent callers never conflict or retry.
func (s *store) incr(ctx context.Context, window int64, n int) (int64, error) {
	m := nats.NewMsg(s.counterSubject(window))
	m.Header.Set(incrHeader, "+"+strconv.Itoa(n))
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("ratelimit: counter increment: %w", err)
	}
	v, err := strconv.ParseInt(ack.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ratelimit: counter increment: PubAck value %q: %w", ack.Value, err)
	}
	return v, nil
}

// count returns the counter of window (0 if nothing was counted yet).
func (s *store) count(ctx context.Context, window int64) (int64, error) {
	m, err := s.counts.GetLastMsgForSubject(ctx, s.counterSubject(window))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ratelimit: counter read: %w", err)
	}
	return parseCounter(m.Data)
}

func (s *store) counterSubject(window int64) string {
	return s.subject + "." + strconv.FormatInt(window, 10)
}

// isConflict reports whether err is a lost compare-and-set.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// put writes value under key if its revision is still rev (0: the key must
// not exist) and returns the new revision.
func (s *store) put(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if rev == 0 {
		r, err := s.kv.Create(ctx, key, value)
		return r, err
	}
	return s.kv.Update(ctx, key, value, rev)
}

// parseCounter reads a counter message body, {"val":"<decimal>"}.
func parseCounter(data []byte) (int64, error) {
	var v struct {
		Val string `json:"val"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return 0, fmt.Errorf("ratelimit: counter value %q: %w", data, err)
	}
	n, err := strconv.ParseInt(v.Val, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ratelimit: counter value %q: %w", v.Val, err)
	}
	return n, nil
}
