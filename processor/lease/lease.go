// Package lease gives one holder at a time a named lease across processes,
// with a NATS KV bucket whose entries expire on the server: the worker takes
// the lease of a contact before it sends the contact's PATCH, so two worker
// replicas never have requests for one contact in flight at once.
//
// Acquire creates the key with a per-key TTL (KV Create with KeyTTL): the
// create succeeds for exactly one caller while the key exists; the others
// get ErrHeld. Release purges the key only at the revision its holder
// created (LastRevision), so it never frees a lease that expired and was
// taken by someone else. A holder that dies or stops leaves the key to the
// server's TTL, measured by the server alone: no clocks of different hosts
// are compared.
//
// # Failure modes
//
// A holder paused past its TTL (SIGSTOP, a long GC or VM pause, a network
// partition) loses its lease to the server's TTL while it does not know it,
// and another worker may take the contact. What keeps the paused holder from
// sending late is Lease.Deadline: the local monotonic time, measured from
// before the Create was sent, at which the lease's TTL minus a safety margin
// ends. The caller puts it on the PATCH's context (context.WithDeadline), so
// a holder that resumes after its deadline cannot start a request, and a
// request still running at the deadline is cancelled. What is left:
//
//   - A request already written to the socket before the pause cannot be
//     called back; if the provider reads it late, it may overlap with the
//     next holder's. The margin (Config.Margin) is the time allowed for such
//     a request to reach the provider.
//   - The monotonic clock does not advance while the whole host is
//     suspended (laptop sleep); a host suspended past the TTL resumes with a
//     deadline that looks unexpired.
//   - The server expires a key at its wall-clock store time plus the TTL: a
//     server clock stepped forward expires leases early. In a cluster each
//     replica expires by its own clock.
//   - The TTL is whole seconds (the server truncates to seconds), at least 1s.
//
// Release of a lease that expired on the server returns ErrLost: it may have
// been taken by another holder in the meantime, which is worth a log line.
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// Defaults of Config.
const (
	// DefaultBucket is the KV bucket name.
	DefaultBucket = "PATCHBAY_LEASES"
	// DefaultTTL is how long an unreleased lease lives on the server.
	DefaultTTL = 30 * time.Second
)

// Errors. Each is wrapped with details; test with errors.Is.
var (
	// ErrHeld is returned by Acquire when another holder has the lease.
	ErrHeld = errors.New("lease: held by another holder")
	// ErrLost is returned by Release when the lease is no longer the
	// caller's: it expired on the server, and may have been taken by
	// another holder (whose lease Release leaves alone).
	ErrLost = errors.New("lease: lost (expired before release)")
)

// Config configures Leases. The zero value of each field takes its default.
type Config struct {
	// Bucket is the KV bucket name (default DefaultBucket).
	Bucket string
	// Replicas of the bucket, 1..5 (default 1; 3 in a cluster).
	Replicas int
	// TTL is how long a lease lives on the server unless released: the
	// longest a dead or stopped holder blocks its key. Whole seconds, at
	// least 1s (default DefaultTTL). It must exceed the longest piece of
	// work done under a lease (a PATCH with its timeout) plus Margin.
	TTL time.Duration
	// Margin is taken off TTL for Lease.Deadline: time for a request sent
	// just before the deadline to reach the provider, and for the server to
	// store the key after Acquire began (default TTL/5).
	Margin time.Duration
	// Holder names the holder in the stored value (for example hostname and
	// pid), for operators inspecting the bucket; optional.
	Holder string
}

func (c *Config) setDefaults() {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Margin == 0 {
		c.Margin = c.TTL / 5
	}
}

func (c Config) validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("lease: replicas %d out of range 1..5", c.Replicas)
	case c.TTL < time.Second || c.TTL%time.Second != 0:
		return fmt.Errorf("lease: TTL %s must be whole seconds, at least 1s", c.TTL)
	case c.Margin < 0 || c.Margin >= c.TTL:
		return fmt.Errorf("lease: margin %s must be in [0, TTL %s)", c.Margin, c.TTL)
	}
	return nil
}

// Leases hands out leases from one KV bucket. Use New; Leases is safe for
// concurrent use.
type Leases struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	ttl    time.Duration
	margin time.Duration
	holder []byte
}

// New creates the bucket described by cfg with per-key TTLs enabled
// (LimitMarkerTTL, nats-server 2.11+), or updates it to cfg if it exists. It
// fails on an invalid cfg, or wrapping the jetstream error when the bucket
// cannot be created or updated (a server without per-message TTLs gives
// jetstream.ErrLimitMarkerTTLNotSupported; more replicas than servers fail
// too).
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Leases, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	kv, err := stream.CreateOrUpdateKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "patchbay: one delivery per contact at a time (leases with a server-side TTL)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// Markers left by an expired lease or a release go away after one
		// TTL; the key is free as soon as the lease is gone.
		LimitMarkerTTL: cfg.TTL,
	})
	if err != nil {
		return nil, fmt.Errorf("lease: bucket %s: %w", cfg.Bucket, err)
	}
	return &Leases{js: js, kv: kv, ttl: cfg.TTL, margin: cfg.Margin, holder: []byte(cfg.Holder)}, nil
}

// markerTTL is how long the marker a Release leaves behind lives (the
// server's minimum). While it lives, the next Acquire of the key costs one
// more round trip (Create finds the marker, then updates over it).
const markerTTL = time.Second

// casConflict reports whether err is a lost compare-and-set: the key exists
// or has another revision. Create reports it as ErrKeyExists, except when it
// raced over a delete marker, where it returns the raw "wrong last sequence"
// API error, whose code differs on replicated buckets (10164, not 10071).
func casConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Lease is one acquired lease. Its methods are safe for concurrent use.
type Lease struct {
	l        *Leases
	key      string
	revision uint64
	deadline time.Time
}

// Acquire takes the lease named key (a valid KV key: letters, digits, '-',
// '_', '=', '/' and '.' between tokens). It returns ErrHeld (wrapped) when
// another holder has it; it never waits for it. Other failures wrap
// jetstream.ErrInvalidKey, ctx's error or the jetstream error; after a
// failure that is not ErrHeld (a timeout), the lease may still have been
// created and then stays held until its TTL.
func (l *Leases) Acquire(ctx context.Context, key string) (*Lease, error) {
	for attempt := 1; ; attempt++ {
		start := time.Now() // before the request: the server's TTL starts later
		rev, err := l.kv.Create(ctx, key, l.holder, jetstream.KeyTTL(l.ttl))
		if err == nil {
			return &Lease{l: l, key: key, revision: rev, deadline: start.Add(l.ttl - l.margin)}, nil
		}
		if !casConflict(err) {
			return nil, fmt.Errorf("lease: acquire %s: %w", key, err)
		}
		// Create also reports a conflict when the marker a release or an
		// expiry left vanished between its write and its read: the key is
		// free then, and another attempt takes it.
		if attempt < maxAttempts {
			if _, err := l.kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrHeld, key)
	}
}

// maxAttempts bounds Acquire's Create attempts on a key found free.
const maxAttempts = 3

// Key returns the lease's name.
func (le *Lease) Key() string { return le.key }

// Deadline returns the local time before which the holder may still start
// and must finish its work under the lease: the time Acquire was called,
// plus the TTL, minus the margin. It carries a monotonic clock reading, so
// context.WithDeadline(ctx, le.Deadline()) is immune to wall-clock steps.
func (le *Lease) Deadline() time.Time { return le.deadline }

// Release frees the lease if it is still this holder's: it purges the key
// at the revision Acquire created, leaving nothing behind but a marker that
// expires on its own after a second. If the lease expired and the key was taken again, or
// simply expired, the key is left alone and Release returns ErrLost
// (wrapped). Other failures wrap ctx's error or the jetstream error; the
// lease then ends at its TTL.
func (le *Lease) Release(ctx context.Context) error {
	err := le.l.kv.Purge(ctx, le.key, jetstream.LastRevision(le.revision), jetstream.PurgeTTL(markerTTL))
	if casConflict(err) {
		return fmt.Errorf("%w: %s", ErrLost, le.key)
	}
	if err != nil {
		return fmt.Errorf("lease: release %s: %w", le.key, err)
	}
	return nil
}
