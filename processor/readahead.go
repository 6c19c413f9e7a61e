package processor

import (
	"time"

	"github.com/patchbay/patchbay/processor/ratelimit"
)

// Reading ahead before the first requests
//
// A rate-limited target's window may be open while its backlog is still in
// the stream: a worker starting on a backlog, or a backlog left by an
// outage. Sending at once would send each contact what the first pull
// request brought of it, and its other events in a second request a window
// later. So while a rate-limited target's fetchers are still reading a
// backlog (the last message's NumPending says more are waiting for the
// consumer, messages keep arriving, and there is room left), the lane holds
// its jobs back, at most catchUpMax in a row: reading ahead runs at
// thousands of events a second, a window admits a few requests. Targets
// without a limit never wait.

// catchUpQuiet is how long after the last fetched message the lane still
// counts its fetchers as reading a backlog.
const catchUpQuiet = 100 * time.Millisecond

// catchUpMax bounds how long jobs are held back for one catch-up.
const catchUpMax = 3 * time.Second

// catchUp tracks how far behind the stream a lane's fetchers are.
type catchUp struct {
	pending map[string]uint64 // consumer → messages waiting after its latest message
	total   uint64
	last    time.Time // latest message fetched
	since   time.Time // the catch-up began (total went above 0)
}

// note records a message fetched from consumer, with n more waiting for it.
func (c *catchUp) note(consumer string, n uint64, now time.Time) {
	if c.pending == nil {
		c.pending = map[string]uint64{}
	}
	if c.total == 0 && n > 0 {
		c.since = now
	}
	c.total = c.total - c.pending[consumer] + n
	c.pending[consumer] = n
	c.last = now
}

// holding reports whether jobs wait for the read-ahead now, and until when
// at most (the lane checks again then).
func (c *catchUp) holding(now time.Time, roomLeft bool, limited func() bool) (bool, time.Time) {
	if c.total == 0 || !roomLeft || now.Sub(c.last) >= catchUpQuiet || now.Sub(c.since) >= catchUpMax || !limited() {
		return false, time.Time{}
	}
	return true, minTime(c.last.Add(catchUpQuiet), c.since.Add(catchUpMax))
}

// limited reports whether the lane's target has a request limit.
func (l *lane) limited() bool {
	lim := l.budget.State().Limit
	return lim > 0 && lim < ratelimit.Unlimited
}

// readingAhead reports whether the lane's fetchers may fill the read-ahead
// room (Config.ReadAhead beyond the room deliveries need): while the target
// has a request limit, or is paused or out of its window now. A target
// without a limit that flows holds no more than its deliveries need, so
// its events wait in the stream, not in the worker's memory (where each
// would need a keep-alive every third of the ack wait).
func (l *lane) readingAhead() bool {
	return l.limited() || l.pausedFor(l.w.now()) > 0
}

// lingerFor is how long a rate-limited target's contact waits after its
// oldest pending event was stored before its request goes out. Webhooks
// come in bursts (a CRM re-syncing a list posts every change at once): a
// request sent the moment a contact's first event arrives would go before
// the rest of the burst and cost the contact a second request a window
// later. A second is a small share of any provider's window (Skipcall's is
// a minute) and nothing for a backlog, whose events are older already.
const lingerFor = time.Second

// lingering reports whether the job whose oldest event was stored at
// stored waits (and until when): only for a target with a limit. A clock
// of the worker behind NATS's never makes it wait longer than lingerFor.
func (l *lane) lingering(stored, now time.Time) (bool, time.Time) {
	wait := lingerFor - now.Sub(stored)
	if wait <= 0 || !l.limited() {
		return false, time.Time{}
	}
	return true, now.Add(min(wait, lingerFor))
}
