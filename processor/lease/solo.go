package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// Solo spares the only member of a group the per-key leases: while one
// worker alone delivers a target, it holds the group's solo lease and sends
// without taking a lease per contact (two KV writes per delivery saved);
// as soon as a second member appears, the holder finishes what it sent
// under the solo lease, gives it up, and every member takes per-key leases
// again.
//
// # Protocol
//
// Each member keeps a member key, _group.<group>.member.<id>, alive with
// the bucket's TTL (renewed every TTL/3), and watches _group.<group>.>. A
// member may create the solo key, _group.<group>.solo, only while its
// watch shows no other member and no solo holder; it then waits until its
// watch has delivered its own solo key. The watch delivers the bucket in stream order, so by
// then it has delivered every member key written before the solo key: if
// another is among them, the member gives the solo lease up unused.
// Otherwise any member joining later writes its key after the solo key,
// sees the solo key in its own first watch, and waits until it is gone.
//
// A member works (Enter) only while the key covering the work is alive by
// its local deadline: the solo key for solo work, its member key for work
// under per-key leases. A member key outlives every per-key lease its
// holder may still use, so a solo holder never starts while another
// member's per-key work can run. A member whose key it cannot renew stops
// working at the deadline and joins again.
//
// # Memberships
//
// A member that loses its membership (its watch cannot be started again,
// its member key deleted or expired, a renewal conflict) joins again as a
// new membership, with a member id of its own. Tickets follow the keys of
// the membership they were given under (Ticket.Fence), never the next
// one's. A membership that ends while some of its tickets are not Done
// leaves its keys to expire by their TTL rather than delete them: every
// other member, and the next membership (to which they are another
// member's keys), waits for them as for a live member, so the work still
// running under them never overlaps another member's solo work. Only a
// membership with no work out deletes its keys when it ends.
//
// The view of the group is checked against the bucket at every renewal:
// a watch that was down resumes after the last message it had, and may
// miss the marker of a deletion or an expiry, which lives only a TTL of
// its own. A view that shows a key the bucket no longer has is read again
// from a new watch.
type Solo struct {
	l      *Leases
	group  string
	id     string // each membership's member id is id-<n>
	log    *slog.Logger
	stop   context.CancelFunc
	done   chan struct{}
	idle   chan struct{} // a solo Ticket ended while yielding
	leaves chan struct{} // closed by Close: give the keys up
	ready  chan struct{} // closed the first time the member knows how it may work (Ready)
	once   sync.Once     // closes ready

	mu       sync.Mutex
	mode     mode
	deadline time.Time   // of the key covering work in mode (solo key or member key)
	cur      *membership // whose tickets Enter gives; nil between memberships
}

// membership is one session of a member in its group, from its member
// key's creation until it leaves or loses it. Its tickets keep a pointer
// to it: the next membership has keys, a fence and a count of its own, so
// its renewals never revive a ticket of one that ended.
type membership struct {
	s  *Solo
	id string // the member key's last token, and the solo key's value while it holds it

	// Until when the member key and the solo key are known to be held
	// (unix nanoseconds; 0: not held): moved on by every renewal, so
	// that work running under a Ticket may outlast the deadline it
	// started with (Ticket.Fence). When the membership ends they stay
	// where its last renewal left them, or go to 0 if the key is lost
	// or given up.
	memberValid, soloValid atomic.Int64
	// Tickets not yet Done, solo and shared.
	solo, shared atomic.Int64
}

type mode int

const (
	joining  mode = iota // member key or first watch pending: no work
	shared               // per-key leases
	blocked              // another member holds the solo lease: no work
	claiming             // our solo key written, waiting for the watch to show it
	solo                 // work without per-key leases
	yielding             // another member appeared: no new solo work
)

func (m mode) String() string {
	return [...]string{"joining", "shared", "blocked", "claiming", "solo", "yielding"}[m]
}

// groupPrefix starts every key of a lease group, so that a group's watch
// sees only its own keys, never the per-key leases of the same bucket
// (whose names start with the target, as the group's name does).
const groupPrefix = "_group."

// Ticket is permission for one piece of work, from Solo.Enter.
type Ticket struct {
	// Solo is true when the work needs no per-key lease.
	Solo bool
	// Deadline is the end of the key covering the work as it stood at
	// Enter. Renewals move it on: Fence tells the current one.
	Deadline time.Time
	m        *membership
}

// Fence returns until when the key covering the ticket's work (the solo
// key for solo work, the member key otherwise) is known to be held: work
// may go on, and send, only before it. Each renewal moves it on; once a
// renewal is missed it stays put and passes, and when the key is given up
// or lost it is the zero time. It follows the keys of the membership the
// ticket was given under: once that membership has ended (the member left
// the group or lost a key, and joined again), no later renewal moves it.
// Under a per-key lease the work's fence is the earlier of this and the
// lease's deadline.
func (t Ticket) Fence() time.Time {
	if t.m == nil {
		return t.Deadline
	}
	v := &t.m.memberValid
	if t.Solo {
		v = &t.m.soloValid
	}
	if n := v.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Done ends the work the ticket was for. Call it once per Ticket. While a
// membership has tickets not done, its keys are never deleted when it
// ends, only left to expire.
func (t Ticket) Done() {
	ms := t.m
	if ms == nil {
		return
	}
	if !t.Solo {
		ms.shared.Add(-1)
		return
	}
	if ms.solo.Add(-1) > 0 {
		return
	}
	s := ms.s
	s.mu.Lock()
	if s.cur == ms && s.mode == yielding {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

// Join makes the caller a member of group (a valid key token: letters,
// digits, '-', '_', '=' or '/') and starts keeping its member key alive and
// negotiating the solo lease in the background until Close. Enter says,
// at each moment, whether and how work may start. Join itself does not
// wait for NATS: a member that cannot reach it never gets a Ticket.
func (l *Leases) Join(group string, log *slog.Logger) (*Solo, error) {
	if !stream.KeyToken(group) {
		return nil, fmt.Errorf("lease: group %q is not a key token", group)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Solo{l: l, group: group, id: hex.EncodeToString(b[:]), log: log.With("group", group),
		stop: stop, done: make(chan struct{}), idle: make(chan struct{}, 1), leaves: make(chan struct{}), ready: make(chan struct{})}
	go s.run(ctx)
	return s, nil
}

// Enter returns a Ticket when work may start now: solo (no per-key lease)
// or shared (take the per-key lease). It returns false while the member is
// joining, another member holds the solo lease, a solo holder is handing
// over, or the key covering the work could not be renewed in time: the
// caller holds its work and tries again shortly.
func (s *Solo) Enter() (Ticket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !time.Now().Before(s.deadline) {
		return Ticket{}, false
	}
	switch s.mode {
	case solo:
		s.cur.solo.Add(1)
		return Ticket{Solo: true, Deadline: s.deadline, m: s.cur}, true
	case shared:
		s.cur.shared.Add(1)
		return Ticket{Deadline: s.deadline, m: s.cur}, true
	}
	return Ticket{}, false
}

// Ready is closed once the member has first joined the group and seen it:
// it holds the solo lease, works under per-key leases, or waits for
// another member's solo lease. Before, Enter refuses every Ticket (the
// member is joining), so a caller with work waiting has it wait for a
// retry; one that starts its work after Ready does not.
func (s *Solo) Ready() <-chan struct{} { return s.ready }

// Mode names the member's mode (joining, shared, blocked, claiming, solo,
// yielding), for logs, metrics and tests.
func (s *Solo) Mode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode.String()
}

// Close leaves the group: it deletes the member key and gives the solo
// lease up, so other members need not wait for the TTL. Call it after the
// work under its tickets has ended: while a ticket is not yet Done, the
// keys are left to expire by their TTL instead, and its fence stays where
// the last renewal left it. It waits for the background goroutine up to
// ctx's end.
func (s *Solo) Close(ctx context.Context) {
	select {
	case <-s.leaves:
	default:
		close(s.leaves)
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		s.stop()
		<-s.done
	}
}

func (s *Solo) set(m mode, deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m != s.mode {
		s.log.Debug("lease group mode", "from", s.mode, "to", m)
	}
	s.mode, s.deadline = m, deadline
	if m == solo || m == shared || m == blocked {
		s.once.Do(func() { close(s.ready) })
	}
}

// run joins again whenever a session ends, until Close.
func (s *Solo) run(ctx context.Context) {
	defer close(s.done)
	for try := 0; ; try++ {
		err := s.session(ctx, fmt.Sprintf("%s-%d", s.id, try))
		s.set(joining, time.Time{})
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Warn("lease group membership lost; joining again", "err", err)
		// No delivery of the target runs while the member is out of the
		// group: join again soon.
		d := min(time.Duration(try+1)*250*time.Millisecond, time.Second)
		select {
		case <-ctx.Done():
			return
		case <-s.leaves:
			return
		case <-time.After(d):
		}
	}
}

// session is one membership, as member id: from the member key's creation
// until it is lost (an error) or the member leaves (nil). Each membership
// has an id of its own, so that the next one finds this one's keys, while
// they live, as another member's: it does not take the solo lease while
// work under this one's tickets may still run.
func (s *Solo) session(ctx context.Context, id string) error {
	l := s.l
	prefix := groupPrefix + s.group + "."
	memberKey := prefix + "member." + id
	soloKey := prefix + "solo"
	ms := &membership{s: s, id: id}
	start := time.Now()
	memberRev, err := l.kv.Create(ctx, memberKey, l.holder, jetstream.KeyTTL(l.ttl))
	if err != nil {
		return fmt.Errorf("lease: join %s: %w", s.group, err)
	}
	memberDeadline := start.Add(l.ttl - l.margin)
	ms.memberValid.Store(memberDeadline.UnixNano())
	s.mu.Lock()
	s.cur = ms
	s.mu.Unlock()

	var (
		members   = map[string]bool{}
		holder    string // the solo key's member id, "" when none
		synced    bool   // the watch delivered the bucket's state
		seen      uint64 // last revision a watch delivered
		soloRev   uint64 // our solo key's revision, 0 when we hold none
		soloStart time.Time
		m         = joining
	)
	defer func() {
		// Leaving: no ticket of this membership from here on.
		s.mu.Lock()
		s.cur = nil
		s.mode, s.deadline = joining, time.Time{}
		s.mu.Unlock()
		if out := ms.solo.Load() + ms.shared.Load(); out > 0 {
			// Work under its tickets may still run and send: its keys
			// stay until their TTL, so that every other member, and the
			// next membership, waits for them; the tickets' fences stay
			// where the last renewal left them.
			s.log.Warn("left the lease group with deliveries running; its keys expire by themselves", "deliveries", out)
			return
		}
		// The keys go at once, not at their TTL. No work may go on under
		// them from here.
		ms.memberValid.Store(0)
		ms.soloValid.Store(0)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if soloRev != 0 {
			if err := l.kv.Purge(cctx, soloKey, jetstream.LastRevision(soloRev), jetstream.PurgeTTL(markerTTL)); err != nil && !casConflict(err) {
				s.log.Warn("could not give the solo lease up; it expires by itself", "err", err)
			}
		}
		_ = l.kv.Purge(cctx, memberKey, jetstream.LastRevision(memberRev), jetstream.PurgeTTL(markerTTL))
	}()

	// The group's view comes from a watch of its keys. A watch that was
	// down is resumed by the client after the last message it had (its
	// consumer recreated after a reconnect or missed heartbeats), and a
	// marker of a deletion or an expiry may be gone by then: its own TTL
	// is a second, or the bucket's. So the view is checked against the
	// keys at every renewal, and read again from a new watch when it
	// shows a key the bucket no longer has, or when the watch closed.
	var (
		w       jetstream.KeyWatcher
		updates <-chan jetstream.KeyValueEntry // nil while there is no watch
	)
	watch := func() error {
		if w != nil {
			_ = w.Stop()
			w, updates = nil, nil
		}
		clear(members)
		holder, synced = "", false
		nw, err := l.kv.Watch(ctx, prefix+">")
		if err != nil {
			return fmt.Errorf("lease: watch %s: %w", s.group, err)
		}
		w, updates = nw, nw.Updates()
		return nil
	}
	if err := watch(); err != nil {
		return err
	}
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
	}()

	releaseSolo := func() {
		if soloRev == 0 {
			return
		}
		ms.soloValid.Store(0) // no solo work from here
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := l.kv.Purge(cctx, soloKey, jetstream.LastRevision(soloRev), jetstream.PurgeTTL(markerTTL)); err != nil && !casConflict(err) {
			s.log.Warn("could not give the solo lease up; it expires by itself", "err", err)
		}
		soloRev = 0
	}
	// renewKeys renews the member key and the solo key if held; it
	// returns an error when one of them is lost.
	renewKeys := func() error {
		t := time.Now()
		rev, err := s.renew(ctx, memberKey, memberRev, l.holder)
		if casConflict(err) {
			ms.memberValid.Store(0) // the key is not ours: no work under it from here
			return fmt.Errorf("lease: member key lost: %w", err)
		}
		if err != nil {
			s.log.Warn("could not renew the member key", "err", err)
			return nil
		}
		memberRev, memberDeadline = rev, t.Add(l.ttl-l.margin)
		ms.memberValid.Store(memberDeadline.UnixNano())
		if soloRev == 0 {
			return nil
		}
		rev, err = s.renew(ctx, soloKey, soloRev, []byte(ms.id))
		if casConflict(err) {
			soloRev = 0
			ms.soloValid.Store(0) // the key is not ours: no solo work from here
			return fmt.Errorf("lease: solo key lost: %w", err)
		}
		if err != nil {
			s.log.Warn("could not renew the solo lease", "err", err)
			return nil
		}
		soloRev, soloStart = rev, t
		ms.soloValid.Store(t.Add(l.ttl - l.margin).UnixNano())
		return nil
	}
	renew := time.NewTicker(l.ttl / 3)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.leaves:
			return nil
		case e, ok := <-updates:
			if !ok {
				s.log.Info("lease group watch closed; reading the group again")
				if err := watch(); err != nil {
					return fmt.Errorf("lease: group watch closed: %w", err)
				}
				continue
			}
			if e == nil {
				synced = true
				break
			}
			seen = max(seen, e.Revision())
			name := strings.TrimPrefix(e.Key(), prefix)
			put := e.Operation() == jetstream.KeyValuePut
			switch {
			case name == "solo":
				holder = ""
				if put {
					holder = string(e.Value())
				}
			case strings.HasPrefix(name, "member."):
				id := strings.TrimPrefix(name, "member.")
				if put {
					members[id] = true
				} else {
					delete(members, id)
					if id == ms.id {
						ms.memberValid.Store(0) // no work under it from here
						return errors.New("lease: member key deleted or expired")
					}
				}
			}
		case <-renew.C:
			if err := renewKeys(); err != nil {
				return err
			}
			if w != nil && (!synced || !s.stale(ctx, prefix, members, holder, ms.id)) {
				break
			}
			s.log.Info("lease group view out of date; reading the group again")
			if err := watch(); err != nil {
				s.log.Warn("cannot watch the lease group; trying again", "err", err)
			}
			continue
		case <-s.idle:
		}
		if !synced {
			continue
		}
		others := len(members)
		if members[ms.id] {
			others--
		}
		switch {
		case m == solo || m == yielding:
			if others == 0 {
				m = solo
				break
			}
			s.mu.Lock()
			busy := ms.solo.Load() > 0
			s.mode = yielding
			s.mu.Unlock()
			m = yielding
			if busy {
				continue // the last solo Ticket's Done wakes us
			}
			releaseSolo()
			s.log.Info("another worker joined; delivering under per-contact leases")
			m = shared
		case m == claiming:
			if seen < soloRev {
				continue
			}
			if others > 0 || holder != ms.id {
				releaseSolo()
				m = shared
				break
			}
			s.log.Info("the only worker of this target: delivering without per-contact leases")
			m = solo
		case holder != "" && holder != ms.id:
			m = blocked
		case holder == "" && others == 0:
			t := time.Now()
			rev, err := l.kv.Create(ctx, soloKey, []byte(ms.id), jetstream.KeyTTL(l.ttl))
			if err == nil {
				soloRev, soloStart, m = rev, t, claiming
				ms.soloValid.Store(t.Add(l.ttl - l.margin).UnixNano())
				continue
			}
			if !casConflict(err) {
				s.log.Warn("could not take the solo lease", "err", err)
			}
			m = shared
		default:
			m = shared
		}
		switch m {
		case solo:
			s.set(solo, soloStart.Add(l.ttl-l.margin))
		case shared:
			s.set(shared, memberDeadline)
		default:
			s.set(m, time.Time{})
		}
	}
}

// stale reports whether the group's view shows a key of another member
// that the bucket no longer has: a member key, or the solo key it holds.
// A watch delivers every later write, but the marker of a deletion or an
// expiry lives a TTL of its own; a watch that was down (the client
// recreates its consumer after missing heartbeats, from the last message
// it had) may find it gone. A failed read reports nothing: the next
// renewal asks again.
func (s *Solo) stale(ctx context.Context, prefix string, members map[string]bool, holder, self string) bool {
	cctx, cancel := context.WithTimeout(ctx, s.l.ttl/3)
	defer cancel()
	gone := func(key string) bool {
		_, err := s.l.kv.Get(cctx, key)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}
	for id := range members {
		if id != self && gone(prefix+"member."+id) {
			return true
		}
	}
	return holder != "" && holder != self && gone(prefix+"solo")
}

// renew rewrites key at revision rev, with value, with a fresh TTL and
// returns the new revision.
func (s *Solo) renew(ctx context.Context, key string, rev uint64, value []byte) (uint64, error) {
	l := s.l
	cctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	msg := &nats.Msg{Subject: "$KV." + l.kv.Bucket() + "." + key, Data: value}
	ack, err := l.js.PublishMsg(cctx, msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(l.ttl))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}
