package lease_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lease"
	"github.com/patchbay/patchbay/stream/embedded"
)

// join makes a member of group on its own connection, closed at cleanup.
func join(t *testing.T, emb *embedded.Server, group string) *lease.Solo {
	t.Helper()
	s, err := newLeases(t, connect(t, emb), lease.Config{TTL: 3 * time.Second}).Join(group, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// waitMode polls s until it is in mode want, for at most 30 seconds (a
// handover takes milliseconds).
func waitMode(t *testing.T, ctx context.Context, s *lease.Solo, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for s.Mode() != want {
		select {
		case <-ctx.Done():
			t.Fatalf("member still %s, want %s", s.Mode(), want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestSoloHandsOverWhenASecondMemberJoins: a lone member works solo; a
// second member waits while the first still has solo work running, then
// both work under per-key leases; when the second leaves, the first is
// solo again.
func TestSoloHandsOverWhenASecondMemberJoins(t *testing.T) {
	ctx := natstest.Context(t)
	emb := natstest.Server(t)
	a := join(t, emb, "skipcall")
	waitMode(t, ctx, a, "solo")
	tk, ok := a.Enter()
	if !ok || !tk.Solo {
		t.Fatalf("lone member: Enter = %+v, %v; want a solo ticket", tk, ok)
	}
	if d := time.Until(tk.Deadline); d <= 0 || d > 3*time.Second {
		t.Fatalf("solo ticket deadline %s from now, want within the TTL", d)
	}

	b := join(t, emb, "skipcall")
	waitMode(t, ctx, a, "yielding")
	if _, ok := a.Enter(); ok {
		t.Fatal("a yielding member gave a new ticket")
	}
	// b must not work while a's solo work runs, however long it waits.
	for range 20 {
		if tk, ok := b.Enter(); ok {
			t.Fatalf("second member got %+v while the first still had solo work running", tk)
		}
		time.Sleep(10 * time.Millisecond) // observing that nothing happens: there is no event to wait for
	}
	tk.Done()
	waitMode(t, ctx, a, "shared")
	waitMode(t, ctx, b, "shared")
	for _, m := range []*lease.Solo{a, b} {
		tk, ok := m.Enter()
		if !ok || tk.Solo {
			t.Fatalf("two members: Enter = %+v, %v; want a shared ticket", tk, ok)
		}
		tk.Done()
	}

	b.Close(ctx)
	waitMode(t, ctx, a, "solo")
}

// TestSoloNeverBesideSharedWork: members joining and leaving at random
// never have solo work of one member running beside any work of another.
func TestSoloNeverBesideSharedWork(t *testing.T) {
	ctx := natstest.Context(t)
	emb := natstest.Server(t)
	var (
		mu                         sync.Mutex
		running                    = map[*lease.Solo][2]int{} // per member: solo, shared work running
		violations                 []string
		soloTickets, sharedTickets int
	)
	// others counts the work of members other than m: solo, shared.
	others := func(m *lease.Solo) (solo, shared int) {
		for o, n := range running {
			if o != m {
				solo, shared = solo+n[0], shared+n[1]
			}
		}
		return
	}
	work := func(m *lease.Solo, stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tk, ok := m.Enter()
			if !ok {
				time.Sleep(time.Millisecond) // a held delivery retries later
				continue
			}
			kind := 1
			if tk.Solo {
				kind = 0
			}
			mu.Lock()
			os, osh := others(m)
			if tk.Solo && os+osh > 0 || !tk.Solo && os > 0 {
				violations = append(violations, fmt.Sprintf("solo=%v work beside %d solo and %d shared of other members", tk.Solo, os, osh))
			}
			n := running[m]
			n[kind]++
			running[m] = n
			if tk.Solo {
				soloTickets++
			} else {
				sharedTickets++
			}
			mu.Unlock()
			time.Sleep(time.Millisecond) // the work
			mu.Lock()
			n = running[m]
			n[kind]--
			running[m] = n
			mu.Unlock()
			tk.Done()
		}
	}
	var wg sync.WaitGroup
	for round := range 12 {
		// Members join one after another (the first solo before the next
		// comes), or all at once, racing for the solo lease.
		n, atOnce := 1+round%3, round%2 == 1
		members := make([]*lease.Solo, n)
		stop := make(chan struct{})
		var joins sync.WaitGroup
		for i := range n {
			joins.Go(func() {
				m := join(t, emb, "revyops")
				members[i] = m
				for range 4 {
					wg.Go(func() { work(m, stop) })
				}
			})
			if !atOnce {
				joins.Wait()
				if i == 0 {
					waitMode(t, ctx, members[0], "solo")
				}
			}
		}
		joins.Wait()
		if n > 1 {
			for _, m := range members {
				waitMode(t, ctx, m, "shared")
			}
		}
		close(stop)
		wg.Wait()
		for _, m := range members {
			m.Close(ctx)
		}
	}
	if len(violations) > 0 {
		t.Fatalf("%d violations, first: %s", len(violations), violations[0])
	}
	if soloTickets == 0 || sharedTickets == 0 {
		t.Fatalf("solo tickets %d, shared tickets %d: the test did not exercise both", soloTickets, sharedTickets)
	}
	t.Logf("%d solo and %d shared tickets", soloTickets, sharedTickets)
}

// TestTicketFenceFollowsRenewals: a solo ticket's fence moves on with each
// renewal of the solo key, past the deadline the ticket started with, so
// long work is not cut short while the key is held; once the member leaves
// the fence is the zero time, and no work may go on under it.
func TestTicketFenceFollowsRenewals(t *testing.T) {
	ctx := natstest.Context(t)
	emb := natstest.Server(t)
	a := join(t, emb, "skipcall") // TTL 3 s: renewed every second
	waitMode(t, ctx, a, "solo")
	tk, ok := a.Enter()
	if !ok || !tk.Solo {
		t.Fatalf("lone member: Enter = %+v, %v; want a solo ticket", tk, ok)
	}
	if f := tk.Fence(); f.Before(tk.Deadline) {
		t.Fatalf("fence %s before the ticket's deadline %s", f, tk.Deadline)
	}
	for !tk.Fence().After(tk.Deadline) {
		select {
		case <-ctx.Done():
			t.Fatalf("the fence stayed at %s: renewals do not move it on", tk.Fence())
		case <-time.After(10 * time.Millisecond):
		}
	}
	tk.Done()
	a.Close(ctx)
	if f := tk.Fence(); !f.IsZero() {
		t.Fatalf("fence %s after the member left, want the zero time", f)
	}
}
