package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Keep renews the lease for a fresh TTL from now, if it is still this
// holder's (the key is at the revision Acquire, or the last Keep, wrote),
// and returns the renewed lease; le itself is left unchanged. A holder
// keeps a lease it will not release when something it sent under it may
// still take effect (a request whose outcome is unknown): the key then
// expires on the server, no sooner than one TTL after Keep was called.
//
// If the lease expired, or was taken by another holder, Keep returns
// ErrLost (wrapped); other failures wrap ctx's error or the jetstream
// error, and the lease then ends when it would have.
func (le *Lease) Keep(ctx context.Context) (*Lease, error) {
	l := le.l
	start := time.Now() // before the request: the server's TTL starts later
	msg := &nats.Msg{Subject: "$KV." + l.kv.Bucket() + "." + le.key, Data: l.holder}
	ack, err := l.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(le.revision), jetstream.WithMsgTTL(l.ttl))
	if casConflict(err) {
		return nil, fmt.Errorf("%w: %s", ErrLost, le.key)
	}
	if err != nil {
		return nil, fmt.Errorf("lease: keep %s: %w", le.key, err)
	}
	return &Lease{l: l, key: le.key, revision: ack.Sequence, deadline: start.Add(l.ttl - l.margin)}, nil
}

// Expiry returns the local time before which the lease's key is still on
// the server: the deadline plus the margin (Config.Margin). The server
// stores the key after Acquire or Keep began, so it expires no sooner.
func (le *Lease) Expiry() time.Time { return le.deadline.Add(le.l.margin) }

// TTL returns how long a lease lives on the server unless released.
func (l *Leases) TTL() time.Duration { return l.ttl }
