package lease_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lease"
	"github.com/patchbay/patchbay/stream/embedded"
)

// The keys of a lease group, as Solo writes them (a test reads and writes
// them as another replica, an operator or the server's TTL would).
func memberKey(group, id string) string { return "_group." + group + ".member." + id }
func soloKey(group string) string       { return "_group." + group + ".solo" }

// bucket returns the default lease bucket on its own connection, created
// with the TTL join uses.
func bucket(t *testing.T, ctx context.Context, emb *embedded.Server) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	js := connect(t, emb)
	newLeases(t, js, lease.Config{TTL: 3 * time.Second})
	kv, err := js.KeyValue(ctx, lease.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

// soloHolder returns the member id the solo key names; it fails the test
// when there is no solo key.
func soloHolder(t *testing.T, ctx context.Context, kv jetstream.KeyValue, group string) string {
	t.Helper()
	e, err := kv.Get(ctx, soloKey(group))
	if err != nil {
		t.Fatalf("solo key: %v", err)
	}
	return string(e.Value())
}

// memberKeys returns the group's member keys that exist, with their
// revisions.
func memberKeys(t *testing.T, ctx context.Context, kv jetstream.KeyValue, group string) map[string]uint64 {
	t.Helper()
	keys := map[string]uint64{}
	lister, err := kv.ListKeysFiltered(ctx, memberKey(group, ">"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // gone since it was listed
		}
		if err != nil {
			t.Fatal(err)
		}
		keys[k] = e.Revision()
	}
	return keys
}

// poll calls cond every few milliseconds until it is true; it fails the
// test with what when ctx ends first.
func poll(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not seen before the test's time ran out", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestTicketOfAnEndedSessionStaysLapsed: a member whose membership ends
// with an error (its member key deleted, as when it expired while the
// renewals failed) joins again at once; a ticket it took before must not
// find its fence valid again when the next membership renews its own keys,
// for another replica may have worked on the same contacts in between.
func TestTicketOfAnEndedSessionStaysLapsed(t *testing.T) {
	for _, solo := range []bool{true, false} {
		name := "solo ticket"
		if !solo {
			name = "shared ticket"
		}
		t.Run(name, func(t *testing.T) {
			ctx := natstest.Context(t)
			emb := natstest.Server(t)
			_, kv := bucket(t, ctx, emb)
			const group = "skipcall"
			want := "solo"
			if !solo {
				// Another replica's member key: the member works under
				// per-key leases.
				if _, err := kv.Create(ctx, memberKey(group, "other"), nil, jetstream.KeyTTL(time.Minute)); err != nil {
					t.Fatal(err)
				}
				want = "shared"
			}
			a := join(t, emb, group)
			waitMode(t, ctx, a, want)
			tk, ok := a.Enter()
			if !ok || tk.Solo != solo {
				t.Fatalf("Enter = %+v, %v; want a ticket with Solo %v", tk, ok, solo)
			}
			defer tk.Done()

			keys := memberKeys(t, ctx, kv, group)
			delete(keys, memberKey(group, "other"))
			if len(keys) != 1 {
				t.Fatalf("member keys %v, want the member's own one", keys)
			}
			var old string
			var oldRev uint64
			for k, rev := range keys {
				old, oldRev = k, rev
			}
			if err := kv.Purge(ctx, old); err != nil {
				t.Fatal(err)
			}
			// The member joins again: a member key written after the
			// purge (under the same name or another).
			poll(t, ctx, "a member key of the next membership", func() bool {
				for k, rev := range memberKeys(t, ctx, kv, group) {
					if k != memberKey(group, "other") && rev > oldRev {
						return true
					}
				}
				return false
			})
			var next lease.Ticket
			poll(t, ctx, "a ticket of the next membership", func() bool {
				next, ok = a.Enter()
				return ok
			})
			defer next.Done()
			if f := tk.Fence(); f.After(time.Now()) {
				t.Fatalf("the ended membership's ticket has a fence %s ahead once the next one works", time.Until(f))
			}
			// The next membership's renewals move its own tickets' fences
			// on, never the old one's.
			poll(t, ctx, "a renewal of the next membership", func() bool { return next.Fence().After(next.Deadline) })
			if f := tk.Fence(); f.After(time.Now()) {
				t.Fatalf("the ended membership's ticket has a fence %s ahead after the next one renewed", time.Until(f))
			}
		})
	}
}

// TestEndedSessionLeavesItsKeysWhileTicketsAreOut: a membership that ends
// with an error (a renewal conflict) while a solo delivery still runs
// leaves its solo key to expire by its TTL: the other member, which waits
// for that key, gets no ticket before the old delivery's fence has passed.
func TestEndedSessionLeavesItsKeysWhileTicketsAreOut(t *testing.T) {
	ctx := natstest.Context(t)
	emb := natstest.Server(t)
	_, kv := bucket(t, ctx, emb)
	const group = "revyops"
	a := join(t, emb, group)
	waitMode(t, ctx, a, "solo")
	tk, ok := a.Enter()
	if !ok || !tk.Solo {
		t.Fatalf("lone member: Enter = %+v, %v; want a solo ticket", tk, ok)
	}
	defer tk.Done()
	b := join(t, emb, group)
	waitMode(t, ctx, a, "yielding")
	waitMode(t, ctx, b, "blocked")

	// Someone else writes a's member key: a's next renewal conflicts.
	holder := soloHolder(t, ctx, kv, group)
	if _, err := kv.Put(ctx, memberKey(group, holder), []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "a's membership ending", func() bool { return a.Mode() != "yielding" })
	if got := soloHolder(t, ctx, kv, group); got != holder {
		t.Fatalf("solo key names %q after a's membership ended, want %q (left to expire)", got, holder)
	}
	poll(t, ctx, "b working", func() bool {
		next, ok := b.Enter()
		if ok {
			next.Done()
			if f := tk.Fence(); !time.Now().After(f) {
				t.Fatalf("b got a ticket while a's solo delivery may still run for %s", time.Until(f))
			}
		}
		return ok
	})
}

// TestCloseLeavesKeysOnlyWhenNoWorkIsOut: Close with a delivery still
// running (solo, or shared beside another member) leaves the keys covering
// it to their TTL, and the delivery's fence where the last renewal left it;
// with nothing running it deletes them at once.
func TestCloseLeavesKeysOnlyWhenNoWorkIsOut(t *testing.T) {
	for _, solo := range []bool{true, false} {
		name := "solo"
		if !solo {
			name = "shared"
		}
		t.Run(name, func(t *testing.T) {
			ctx := natstest.Context(t)
			emb := natstest.Server(t)
			_, kv := bucket(t, ctx, emb)
			const group = "skipcall"
			if !solo {
				if _, err := kv.Create(ctx, memberKey(group, "other"), nil, jetstream.KeyTTL(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			// ownKeys returns the keys of the member that joined after
			// the member keys before: its member key and, solo, the solo
			// key.
			ownKeys := func(before map[string]uint64) []string {
				t.Helper()
				if solo {
					return []string{memberKey(group, soloHolder(t, ctx, kv, group)), soloKey(group)}
				}
				keys := memberKeys(t, ctx, kv, group)
				for k := range before {
					delete(keys, k)
				}
				if len(keys) != 1 {
					t.Fatalf("member keys %v, want one besides %v", keys, before)
				}
				for k := range keys {
					return []string{k}
				}
				return nil
			}
			for _, running := range []bool{true, false} {
				before := memberKeys(t, ctx, kv, group)
				m := join(t, emb, group)
				waitMode(t, ctx, m, name) // for the second, once the first one's keys expired
				tk, ok := m.Enter()
				if !ok || tk.Solo != solo {
					t.Fatalf("Enter = %+v, %v; want a ticket with Solo %v", tk, ok, solo)
				}
				keys := ownKeys(before)
				if !running {
					tk.Done()
				}
				m.Close(ctx)
				for _, k := range keys {
					_, err := kv.Get(ctx, k)
					switch {
					case running && err != nil:
						t.Fatalf("%s after Close with a delivery running: %v, want it left to expire", k, err)
					case !running && !errors.Is(err, jetstream.ErrKeyNotFound):
						t.Fatalf("%s after Close with nothing running: %v, want it deleted", k, err)
					}
				}
				if running {
					if tk.Fence().IsZero() {
						t.Fatal("the running delivery's fence ended at Close, though its key is still held")
					}
					tk.Done()
				}
			}
		})
	}
}

// TestMemberGoneWhileTheWatchWasDownIsSeen: while a member's watch is
// down (its consumer deleted on the server; the client recreates it only
// after missing heartbeats, resuming after the last message it had), the
// other member leaves, its key expires, or it gives its solo lease up, and
// the marker saying so is gone by its own TTL before the watch resumes.
// The member must read the group's keys again, not stay shared or blocked
// for good.
func TestMemberGoneWhileTheWatchWasDownIsSeen(t *testing.T) {
	const group = "skipcall"
	other := memberKey(group, "other")
	for _, tc := range []struct {
		name      string
		ttl       time.Duration // of the other member's key, renewed until the watch is down
		holds     bool          // the other member holds the solo lease
		purge     []string      // keys purged (with a marker of a second) once the watch is down
		from, end string        // the member's mode before and after
	}{
		{"left", time.Minute, false, []string{other}, "shared", "solo"},
		{"expired", time.Second, false, nil, "shared", "solo"},
		{"solo lease given up", time.Minute, true, []string{soloKey(group)}, "blocked", "shared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := natstest.Context(t)
			emb := natstest.Server(t)
			js, kv := bucket(t, ctx, emb)
			if _, err := kv.Create(ctx, other, nil, jetstream.KeyTTL(tc.ttl)); err != nil {
				t.Fatal(err)
			}
			if tc.holds {
				if _, err := kv.Create(ctx, soloKey(group), []byte("other"), jetstream.KeyTTL(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			// The other member keeps its key alive until the watch is
			// down.
			alive := make(chan struct{})
			renewed := make(chan struct{})
			go func() {
				defer close(renewed)
				for {
					select {
					case <-alive:
						return
					case <-time.After(200 * time.Millisecond):
					}
					msg := &nats.Msg{Subject: "$KV." + lease.DefaultBucket + "." + other}
					if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgTTL(tc.ttl)); err != nil && ctx.Err() == nil {
						t.Errorf("renew the other member's key: %v", err)
						return
					}
				}
			}()
			a := join(t, emb, group)
			waitMode(t, ctx, a, tc.from)

			// a's watch goes down: its consumer is the stream's only one.
			st, err := js.Stream(ctx, "KV_"+lease.DefaultBucket)
			if err != nil {
				t.Fatal(err)
			}
			names := st.ConsumerNames(ctx)
			n := 0
			for c := range names.Name() {
				if err := st.DeleteConsumer(ctx, c); err != nil {
					t.Fatal(err)
				}
				n++
			}
			if names.Err() != nil || n != 1 {
				t.Fatalf("deleted %d consumers (%v), want a's watch", n, names.Err())
			}
			close(alive)
			<-renewed
			gone := tc.purge
			for _, k := range tc.purge {
				// As Close and a solo holder handing over do.
				if err := kv.Purge(ctx, k, jetstream.PurgeTTL(time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.ttl == time.Second {
				gone = append(gone, other)
			}
			// Wait until not even the markers are left.
			for _, k := range gone {
				poll(t, ctx, k+" and its marker gone", func() bool {
					_, err := st.GetLastMsgForSubject(ctx, "$KV."+lease.DefaultBucket+"."+k)
					if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !strings.Contains(err.Error(), "not found") {
						t.Fatal(err)
					}
					return err != nil
				})
			}
			waitMode(t, ctx, a, tc.end)
		})
	}
}
