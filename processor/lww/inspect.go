package lww

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
)

// ErrNoBucket means the state bucket does not exist: no worker has
// started on this NATS yet.
var ErrNoBucket = errors.New("lww: no state bucket")

// Inspector reads contacts' stored states for operators (patchbay
// contacts show, the console), without creating or changing the bucket.
// Its reads may be answered by any replica (a direct get): a diagnostic
// view, never a base for a Commit.
type Inspector struct {
	kv jetstream.KeyValue
}

// OpenInspector returns an Inspector on the existing bucket; it fails
// wrapping ErrNoBucket when there is none, or the jetstream error.
func OpenInspector(ctx context.Context, js jetstream.JetStream, bucket string) (*Inspector, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNoBucket, bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("lww: bucket %s: %w", bucket, err)
	}
	return &Inspector{kv: kv}, nil
}

// Get returns the stored state of (target, contact), as Store.Get does:
// an empty State (Revision 0) when the contact has no entry. The values
// are personal data: show them to the operator who asked, never log them.
func (i *Inspector) Get(ctx context.Context, target events.Target, contact string) (State, error) {
	key, err := Key(target, contact)
	if err != nil {
		return State{}, err
	}
	e, err := i.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	st, err := decodeState(e.Value())
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	st.Revision = e.Revision()
	return st, nil
}

// IsPending reports whether field name is owed a repair (see State.Pending).
func (st State) IsPending(name string) bool { return st.pending(name) }
