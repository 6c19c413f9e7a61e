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
type Solo struct {
	l      *Leases
	group  string
	id     string
	log    *slog.Logger
	stop   context.CancelFunc
	done   chan struct{}
	idle   chan struct{} // a solo Ticket ended while yielding
	leaves chan struct{} // closed by Close: give the keys up

	mu       sync.Mutex
	mode     mode
	deadline time.Time // of the key covering work in mode (solo key or member key)
	inflight int       // solo tickets not yet Done

	// Until when the member key and the solo key are known to be ours
	// (unix nanoseconds; 0: not held): moved on by every renewal, so
	// that work running under a Ticket may outlast the deadline it
	// started with (Ticket.Fence).
	memberValid, soloValid atomic.Int64
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
	s        *Solo
}

// Fence returns until when the key covering the ticket's work (the solo
// key for solo work, the member key otherwise) is known to be held: work
// may go on, and send, only before it. Each renewal moves it on; once a
// renewal is missed it stays put and passes, and when the key is given up
// or lost it is the zero time. Under a per-key lease the work's fence is
// the earlier of this and the lease's deadline.
func (t Ticket) Fence() time.Time {
	if t.s == nil {
		return t.Deadline
	}
	v := &t.s.memberValid
	if t.Solo {
		v = &t.s.soloValid
	}
	if n := v.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Done ends the work the ticket was for. Call it once per Ticket.
func (t Ticket) Done() {
	if !t.Solo || t.s == nil {
		return
	}
	s := t.s
	s.mu.Lock()
	s.inflight--
	if s.inflight == 0 && s.mode == yielding {
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
		stop: stop, done: make(chan struct{}), idle: make(chan struct{}, 1), leaves: make(chan struct{})}
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
		s.inflight++
		return Ticket{Solo: true, Deadline: s.deadline, s: s}, true
	case shared:
		return Ticket{Deadline: s.deadline, s: s}, true
	}
	return Ticket{}, false
}

// Mode names the member's mode (joining, shared, blocked, claiming, solo,
// yielding), for logs, metrics and tests.
func (s *Solo) Mode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode.String()
}

// Close leaves the group: it deletes the member key and gives the solo
// lease up, so other members need not wait for the TTL. Call it after the
// work under its tickets has ended. It waits for the background goroutine
// up to ctx's end.
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
}

// run joins again whenever a session ends, until Close.
func (s *Solo) run(ctx context.Context) {
	defer close(s.done)
	for try := 0; ; try++ {
		err := s.session(ctx)
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

// session is one membership: from the member key's creation until it is
// lost (an error) or the member leaves (nil).
func (s *Solo) session(ctx context.Context) error {
	l := s.l
	prefix := groupPrefix + s.group + "."
	memberKey := prefix + "member." + s.id
	soloKey := prefix + "solo"
	start := time.Now()
	memberRev, err := l.kv.Create(ctx, memberKey, l.holder, jetstream.KeyTTL(l.ttl))
	if err != nil {
		return fmt.Errorf("lease: join %s: %w", s.group, err)
	}
	memberDeadline := start.Add(l.ttl - l.margin)
	s.memberValid.Store(memberDeadline.UnixNano())
	defer func() {
		// Leaving: the member key goes at once, not at its TTL. No work
		// may go on under it from here.
		s.memberValid.Store(0)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = l.kv.Purge(cctx, memberKey, jetstream.LastRevision(memberRev), jetstream.PurgeTTL(markerTTL))
	}()
	w, err := l.kv.Watch(ctx, prefix+">")
	if err != nil {
		return fmt.Errorf("lease: watch %s: %w", s.group, err)
	}
	defer func() { _ = w.Stop() }()

	var (
		members   = map[string]bool{}
		holder    string // the solo key's member id, "" when none
		synced    bool   // the watch delivered the bucket's state
		seen      uint64 // last revision the watch delivered
		soloRev   uint64 // our solo key's revision, 0 when we hold none
		soloStart time.Time
		m         = joining
	)
	releaseSolo := func() {
		if soloRev == 0 {
			return
		}
		s.soloValid.Store(0) // no solo work from here
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := l.kv.Purge(cctx, soloKey, jetstream.LastRevision(soloRev), jetstream.PurgeTTL(markerTTL)); err != nil && !casConflict(err) {
			s.log.Warn("could not give the solo lease up; it expires by itself", "err", err)
		}
		soloRev = 0
	}
	defer releaseSolo()
	renew := time.NewTicker(l.ttl / 3)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.leaves:
			s.set(joining, time.Time{})
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("lease: group watch closed")
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
					if id == s.id {
						return errors.New("lease: member key expired")
					}
				}
			}
		case <-renew.C:
			t := time.Now()
			rev, err := s.renew(ctx, memberKey, memberRev)
			if casConflict(err) {
				return fmt.Errorf("lease: member key lost: %w", err)
			}
			if err != nil {
				s.log.Warn("could not renew the member key", "err", err)
				break
			}
			memberRev, memberDeadline = rev, t.Add(l.ttl-l.margin)
			s.memberValid.Store(memberDeadline.UnixNano())
			if soloRev != 0 {
				rev, err := s.renew(ctx, soloKey, soloRev)
				if casConflict(err) {
					soloRev = 0
					s.soloValid.Store(0) // the key is not ours: no solo work from here
					return fmt.Errorf("lease: solo key lost: %w", err)
				}
				if err != nil {
					s.log.Warn("could not renew the solo lease", "err", err)
					break
				}
				soloRev, soloStart = rev, t
				s.soloValid.Store(t.Add(l.ttl - l.margin).UnixNano())
			}
		case <-s.idle:
		}
		if !synced {
			continue
		}
		others := len(members)
		if members[s.id] {
			others--
		}
		switch {
		case m == solo || m == yielding:
			if others == 0 {
				m = solo
				break
			}
			s.mu.Lock()
			busy := s.inflight > 0
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
			if others > 0 || holder != s.id {
				releaseSolo()
				m = shared
				break
			}
			s.log.Info("the only worker of this target: delivering without per-contact leases")
			m = solo
		case holder != "" && holder != s.id:
			m = blocked
		case holder == "" && others == 0:
			t := time.Now()
			rev, err := l.kv.Create(ctx, soloKey, []byte(s.id), jetstream.KeyTTL(l.ttl))
			if err == nil {
				soloRev, soloStart, m = rev, t, claiming
				s.soloValid.Store(t.Add(l.ttl - l.margin).UnixNano())
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

// renew rewrites key at revision rev with a fresh TTL and returns the new
// revision.
func (s *Solo) renew(ctx context.Context, key string, rev uint64) (uint64, error) {
	l := s.l
	cctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	msg := &nats.Msg{Subject: "$KV." + l.kv.Bucket() + "." + key, Data: l.holder}
	if strings.HasSuffix(key, ".solo") {
		msg.Data = []byte(s.id)
	}
	ack, err := l.js.PublishMsg(cctx, msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(l.ttl))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}
