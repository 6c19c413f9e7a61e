package lww_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
	"github.com/patchbay/patchbay/stream"
)

func newStore(t testing.TB, js jetstream.JetStream, cfg lww.StoreConfig) *lww.Store {
	t.Helper()
	if pub, ok := t.(interface{ Name() string }); ok && strings.HasSuffix(pub.Name(), "/publisher") && cfg.Publisher == nil {
		cfg.Publisher = newPublisher(t, js)
	}
	s, err := lww.NewStore(natstest.Context(t), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bothWritePaths runs test twice: with Commit's writes through the
// KeyValue ("kv"), and with its first write through a stream.Publisher
// ("publisher"), as the worker runs it; newStore reads which from the
// subtest's name.
func bothWritePaths(t *testing.T, test func(*testing.T)) {
	t.Run("kv", test)
	t.Run("publisher", test)
}

func newPublisher(t testing.TB, js jetstream.JetStream) *stream.Publisher {
	t.Helper()
	p, err := stream.NewPublisher(js.Conn())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestStoreCommitOverADeleteMarker: a key an operator deleted holds a
// delete marker, so a create's expected revision 0 is refused; Commit
// still stores the clocks.
func TestStoreCommitOverADeleteMarker(t *testing.T) {
	bothWritePaths(t, testStoreCommitOverADeleteMarker)
}

func testStoreCommitOverADeleteMarker(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	s := newStore(t, js, lww.StoreConfig{})
	st, _ := s.Get(ctx, events.TargetSkipcall, contact)
	if _, err := s.Commit(ctx, events.TargetSkipcall, contact, st, nil, map[string]lww.Clock{"city": at(1, "a")}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, lww.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "skipcall."+contact); err != nil {
		t.Fatal(err)
	}
	st, err = s.Get(ctx, events.TargetSkipcall, contact)
	if err != nil || st.Revision != 0 {
		t.Fatalf("after the delete: %+v, %v; want no state", st, err)
	}
	if _, err := s.Commit(ctx, events.TargetSkipcall, contact, st, nil, map[string]lww.Clock{"role": at(2, "b")}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, events.TargetSkipcall, contact)
	if err != nil || !clocksEqual(got.Fields, map[string]lww.Clock{"role": at(2, "b")}) {
		t.Fatalf("after a commit over the delete marker: %+v, %v", got, err)
	}
}

const contact = "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c"

func TestStoreGetCommit(t *testing.T) { bothWritePaths(t, testStoreGetCommit) }

func testStoreGetCommit(t *testing.T) {
	ctx := natstest.Context(t)
	s := newStore(t, natstest.JetStream(t), lww.StoreConfig{})
	st, err := s.Get(ctx, events.TargetSkipcall, contact)
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 0 || len(st.Fields) != 0 {
		t.Fatalf("no key: %+v, want empty", st)
	}
	applied := map[string]lww.Clock{"city": at(10, "a"), "customFields/tier": at(10, "a"), "role": at(3, "b")}
	if _, err := s.Commit(ctx, events.TargetSkipcall, contact, st, nil, applied); err != nil {
		t.Fatal(err)
	}
	st, err = s.Get(ctx, events.TargetSkipcall, contact)
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision == 0 || !clocksEqual(st.Fields, applied) {
		t.Fatalf("after Commit: %+v, want %v", st, applied)
	}
	// The other target's entry for the same id is separate.
	if other, err := s.Get(ctx, events.TargetRevyOps, contact); err != nil || other.Revision != 0 {
		t.Fatalf("revyops entry: %+v %v", other, err)
	}
	// A second commit keeps the newer clock of each field.
	second := map[string]lww.Clock{"city": at(9, "z"), "role": at(4, "c"), "firstName": at(1, "d")}
	if _, err := s.Commit(ctx, events.TargetSkipcall, contact, st, nil, second); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, events.TargetSkipcall, contact)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]lww.Clock{"city": at(10, "a"), "customFields/tier": at(10, "a"), "role": at(4, "c"), "firstName": at(1, "d")}
	if !clocksEqual(got.Fields, want) || got.Revision <= st.Revision {
		t.Fatalf("after the second Commit: %+v, want %v after revision %d", got, want, st.Revision)
	}
	// Nothing newer: nothing written.
	if _, err := s.Commit(ctx, events.TargetSkipcall, contact, got, nil, map[string]lww.Clock{"city": at(10, "a")}); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Get(ctx, events.TargetSkipcall, contact); again.Revision != got.Revision {
		t.Fatalf("a commit of nothing newer wrote revision %d", again.Revision)
	}
}

func TestStoreCommitStaleStateMerges(t *testing.T) {
	bothWritePaths(t, testStoreCommitStaleStateMerges)
}

func testStoreCommitStaleStateMerges(t *testing.T) {
	ctx := natstest.Context(t)
	s := newStore(t, natstest.JetStream(t), lww.StoreConfig{})
	stale, _ := s.Get(ctx, events.TargetRevyOps, "42") // Revision 0
	if _, err := s.Commit(ctx, events.TargetRevyOps, "42", stale, nil, map[string]lww.Clock{"first_name": at(5, "b")}); err != nil {
		t.Fatal(err)
	}
	// Committed with the stale (revision 0) state: Create fails, re-read, merge.
	if _, err := s.Commit(ctx, events.TargetRevyOps, "42", stale, nil, map[string]lww.Clock{"first_name": at(4, "a"), "last_name": at(4, "a")}); err != nil {
		t.Fatal(err)
	}
	mid, _ := s.Get(ctx, events.TargetRevyOps, "42")
	// And with a stale non-zero revision: Update fails, re-read, merge.
	if _, err := s.Commit(ctx, events.TargetRevyOps, "42", mid, nil, map[string]lww.Clock{"email": at(6, "c")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, events.TargetRevyOps, "42", mid, nil, map[string]lww.Clock{"last_name": at(7, "d")}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, events.TargetRevyOps, "42")
	want := map[string]lww.Clock{"first_name": at(5, "b"), "last_name": at(7, "d"), "email": at(6, "c")}
	if !clocksEqual(got.Fields, want) {
		t.Fatalf("fields %v, want %v", got.Fields, want)
	}
}

func TestStoreConcurrentCommits(t *testing.T) { bothWritePaths(t, testStoreConcurrentCommits) }

func testStoreConcurrentCommits(t *testing.T) {
	ctx := natstest.Context(t)
	s := newStore(t, natstest.JetStream(t), lww.StoreConfig{})
	const writers, commits = 6, 15
	fields := []string{"city", "firstName", "lastName", "customFields/a", "customFields/b"}
	want := map[string]lww.Clock{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, writers*commits)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range commits {
				applied := map[string]lww.Clock{}
				for _, f := range fields {
					if r.IntN(2) == 0 {
						applied[f] = at(r.IntN(50), fmt.Sprintf("w%d-%d", w, i))
					}
				}
				mu.Lock()
				for f, c := range applied {
					if c.After(want[f]) {
						want[f] = c
					}
				}
				mu.Unlock()
				st, err := s.Get(ctx, events.TargetSkipcall, contact)
				if err != nil {
					errs <- err
					return
				}
				if _, err := s.Commit(ctx, events.TargetSkipcall, contact, st, nil, applied); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, events.TargetSkipcall, contact)
	if err != nil {
		t.Fatal(err)
	}
	if !clocksEqual(got.Fields, want) {
		t.Fatalf("after concurrent commits: %v\nwant the per-field max %v", got.Fields, want)
	}
}

func TestStoreConflictBounded(t *testing.T) { bothWritePaths(t, testStoreConflictBounded) }

func testStoreConflictBounded(t *testing.T) {
	ctx := natstest.Context(t)
	s := newStore(t, natstest.JetStream(t), lww.StoreConfig{MaxAttempts: 1})
	st, _ := s.Get(ctx, events.TargetSkipcall, contact)
	if _, err := s.Commit(ctx, events.TargetSkipcall, contact, st, nil, map[string]lww.Clock{"city": at(1, "a")}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Commit(ctx, events.TargetSkipcall, contact, st, nil, map[string]lww.Clock{"city": at(2, "b")})
	if !errors.Is(err, lww.ErrConflict) {
		t.Fatalf("stale commit with one attempt: err = %v, want ErrConflict", err)
	}
}

func TestStoreBucketConfig(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	newStore(t, js, lww.StoreConfig{})
	kv, err := js.KeyValue(ctx, lww.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.TTL() != lww.DefaultTTL || status.History() != 1 {
		t.Fatalf("default bucket: TTL %s history %d", status.TTL(), status.History())
	}
	if lww.DefaultTTL <= 168*time.Hour {
		t.Fatalf("DefaultTTL %s is not longer than the events stream's default max age", lww.DefaultTTL)
	}
	// Reconfiguring updates the bucket.
	newStore(t, js, lww.StoreConfig{TTL: time.Hour})
	if status, _ = kv.Status(ctx); status.TTL() != time.Hour {
		t.Fatalf("updated TTL = %s", status.TTL())
	}
	// A named bucket with replicas as configured: a single server cannot
	// hold 3 replicas, so asking for them must fail.
	s, err := lww.NewStore(ctx, js, lww.StoreConfig{Bucket: "OTHER", Replicas: 3})
	if err == nil {
		t.Fatalf("3 replicas on one server: %v", s)
	}
	if _, err := lww.NewStore(ctx, js, lww.StoreConfig{Replicas: 9}); err == nil {
		t.Fatal("replicas 9 accepted")
	}
}

func TestStoreInvalidKeyAndCorrupt(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	s := newStore(t, js, lww.StoreConfig{})
	for _, c := range []string{"", "a.b", "a b", "*", ">"} {
		if _, err := s.Get(ctx, events.TargetSkipcall, c); !errors.Is(err, lww.ErrInvalid) {
			t.Fatalf("contact %q: err = %v", c, err)
		}
		if _, err := s.Commit(ctx, events.TargetSkipcall, c, lww.State{}, nil, map[string]lww.Clock{"x": at(1, "a")}); !errors.Is(err, lww.ErrInvalid) {
			t.Fatalf("commit contact %q: err = %v", c, err)
		}
	}
	kv, _ := js.KeyValue(ctx, lww.DefaultBucket)
	if _, err := kv.Put(ctx, "skipcall."+contact, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, events.TargetSkipcall, contact); !errors.Is(err, lww.ErrCorrupt) {
		t.Fatalf("garbage value: err = %v", err)
	}
}
