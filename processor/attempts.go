package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// attempts counts provider calls per event in a NATS KV bucket keyed by
// stream sequence, so every replica and every restart sees the same count.
// JetStream's own delivery count also counts deliveries that were not
// provider calls (a worker stopping, a crash before the call), so it is used
// only when the bucket cannot be reached. The bucket is written only when a
// call fails: the happy path costs nothing. Entries expire after the retry
// age (plus a margin), and are deleted when a redelivered event settles.
type attempts struct {
	kv jetstream.KeyValue
}

// newAttempts creates or updates the attempts bucket.
func newAttempts(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, ttl time.Duration) (*attempts, error) {
	kv, err := stream.CreateOrUpdateKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "patchbay: provider calls per pending event (stream sequence -> count, first call)",
		History:     1,
		TTL:         ttl,
		Replicas:    replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("processor: attempts bucket %s: %w", bucket, err)
	}
	return &attempts{kv: kv}, nil
}

// add counts one more failed call of the event at seq and returns the count
// and the time of its first call.
func (a *attempts) add(ctx context.Context, seq uint64, now time.Time) (n int, first time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	key := strconv.FormatUint(seq, 10)
	for range 8 {
		e, err := a.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := a.kv.Create(ctx, key, encodeAttempts(1, now)); err == nil {
				return 1, now, nil
			} else if !casConflict(err) {
				return 0, time.Time{}, err
			}
			continue // another replica wrote it first
		case err != nil:
			return 0, time.Time{}, err
		}
		n, first = decodeAttempts(e.Value(), now)
		if _, err := a.kv.Update(ctx, key, encodeAttempts(n+1, first), e.Revision()); err == nil {
			return n + 1, first, nil
		} else if !casConflict(err) {
			return 0, time.Time{}, err
		}
	}
	return 0, time.Time{}, fmt.Errorf("processor: attempts of %d: too much contention", seq)
}

// casConflict reports whether err is a lost compare-and-set on the bucket:
// the key exists or has another revision. A single-replica bucket reports
// it as ErrKeyExists (JetStream error 10071), a replicated one as the raw
// API error 10164 (wrong last sequence), and a Create over a delete marker
// as the raw API error too.
func casConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// forget deletes the count of a settled event. A failure only leaves the
// entry to expire.
func (a *attempts) forget(ctx context.Context, seq uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = a.kv.Purge(ctx, strconv.FormatUint(seq, 10))
}

func encodeAttempts(n int, first time.Time) []byte {
	return []byte(strconv.Itoa(n) + " " + strconv.FormatInt(first.UnixMilli(), 10))
}

func decodeAttempts(b []byte, now time.Time) (int, time.Time) {
	ns, ms, _ := strings.Cut(string(b), " ")
	n := 0 // a count that cannot be read, or is negative, counts from zero
	if v, err := strconv.ParseUint(ns, 10, strconv.IntSize-1); err == nil {
		n = int(v)
	}
	first := now
	if v, err := strconv.ParseInt(ms, 10, 64); err == nil {
		first = time.UnixMilli(v)
	}
	return n, first
}
