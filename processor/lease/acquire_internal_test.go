package lease

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestCASConflictIsOnlyAWrongRevision guards which errors Acquire and
// Release read as "someone else has the key": jetstream's key-exists and
// revision-mismatch errors, and the raw wrong-last-sequence API error of a
// single-replica (10071) and a replicated bucket (10164), wrapped or not.
// Any other API error (the stream gone, a server refusal) is a failure to
// report, never ErrHeld or ErrLost.
func TestCASConflictIsOnlyAWrongRevision(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"key exists", jetstream.ErrKeyExists, true},
		{"key exists, wrapped", fmt.Errorf("create: %w", jetstream.ErrKeyExists), true},
		{"revision mismatch", jetstream.ErrKeyRevisionMismatch, true},
		{"wrong last sequence (R1)", &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Code: 400}, true},
		{"wrong last sequence (R3)", fmt.Errorf("purge: %w", &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Code: 400}), true},
		{"stream not found", &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamNotFound, Code: 404}, false},
		{"other API error", fmt.Errorf("create: %w", &jetstream.APIError{ErrorCode: 10166, Code: 400}), false},
		{"not an API error", errors.New("nats: timeout"), false},
	} {
		if got := casConflict(tc.err); got != tc.want {
			t.Errorf("%s: casConflict(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// racingKV is a KeyValue whose Create finds the key taken conflicts times
// and then creates it, while Get finds it free every time: the marker of
// a release or an expiry vanishing between Create and Get, again and
// again. Other methods are not used.
type racingKV struct {
	jetstream.KeyValue
	conflicts int // Creates that conflict before one succeeds
	creates   int
}

func (kv *racingKV) Create(_ context.Context, key string, _ []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	kv.creates++
	if kv.creates > 10 {
		return 0, fmt.Errorf("test: Create of %s called %d times: Acquire does not stop retrying", key, kv.creates)
	}
	if kv.creates <= kv.conflicts {
		return 0, jetstream.ErrKeyExists
	}
	return 7, nil
}

func (kv *racingKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, jetstream.ErrKeyNotFound
}

// TestAcquireRetriesAFreedKeyABoundedNumberOfTimes guards Acquire's retry
// when Create conflicts but the key is found free: it tries again, up to
// maxAttempts Creates in all, then reports ErrHeld rather than looping.
func TestAcquireRetriesAFreedKeyABoundedNumberOfTimes(t *testing.T) {
	t.Parallel()
	for conflicts := range maxAttempts + 2 {
		kv := &racingKV{conflicts: conflicts}
		l := &Leases{kv: kv, ttl: DefaultTTL, holder: []byte("test")}
		le, err := l.Acquire(context.Background(), "skipcall.c1")
		wantCreates := min(conflicts+1, maxAttempts)
		switch {
		case conflicts < maxAttempts && (err != nil || le == nil || le.revision != 7):
			t.Errorf("%d conflicts then free: Acquire = %v, %v; want the lease at revision 7", conflicts, le, err)
		case conflicts >= maxAttempts && !errors.Is(err, ErrHeld):
			t.Errorf("%d conflicts: Acquire error %v, want ErrHeld after %d Creates", conflicts, err, maxAttempts)
		}
		if kv.creates != wantCreates {
			t.Errorf("%d conflicts: %d Creates, want %d", conflicts, kv.creates, wantCreates)
		}
	}
}
