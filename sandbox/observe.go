package sandbox

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// Overlap is a contact that had more than one PATCH in flight at the
// sandbox at once: a PATCH arrived while another PATCH for the same contact
// had not been answered yet.
type Overlap struct {
	// Contact is the contact id, canonical (lower-case uuid at Skipcall,
	// decimal at RevyOps).
	Contact string
	// Count is how many PATCHes arrived while another PATCH for Contact was
	// in flight.
	Count int
	// MaxInFlight is the most PATCHes for Contact in flight at once.
	MaxInFlight int
}

// inflight tracks PATCHes in flight per contact; guarded by core.mu.
type inflight struct {
	now      map[string]int // contact -> PATCHes in flight
	overlaps map[string]*Overlap
}

// enter records that a PATCH for contact arrived.
func (c *core) enter(contact string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flight.now == nil {
		c.flight.now = make(map[string]int)
		c.flight.overlaps = make(map[string]*Overlap)
	}
	n := c.flight.now[contact] + 1
	c.flight.now[contact] = n
	if n < 2 {
		return
	}
	o := c.flight.overlaps[contact]
	if o == nil {
		o = &Overlap{Contact: contact}
		c.flight.overlaps[contact] = o
	}
	o.Count++
	o.MaxInFlight = max(o.MaxInFlight, n)
}

// leave records that a PATCH for contact was answered.
func (c *core) leave(contact string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.flight.now[contact] - 1; n > 0 {
		c.flight.now[contact] = n
	} else {
		delete(c.flight.now, contact)
	}
}

// Overlaps returns every contact that ever had more than one PATCH in
// flight at once, sorted by contact id; none means the sandbox never saw two
// concurrent PATCHes for one contact. A PATCH counts from its arrival until
// its answer, whatever the answer (429 and injected faults included). Only
// PATCHes to a contact path are tracked. The result is a copy.
func (c *core) Overlaps() []Overlap {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Overlap, 0, len(c.flight.overlaps))
	for _, o := range c.flight.overlaps {
		out = append(out, *o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Contact < out[j].Contact })
	return out
}

// StatusCounts returns how many requests the sandbox answered with each
// status since it started (StatusClientClosed for clients that left), for
// example counts[http.StatusTooManyRequests]. Unlike Requests it is not
// bounded by MaxRequests. The result is a copy.
func (c *core) StatusCounts() map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int]int, len(c.statuses))
	for s, n := range c.statuses {
		out[s] = n
	}
	return out
}

// skipcallContact returns the canonical contact id of a Skipcall contact
// path.
func skipcallContact(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, skipcallPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	id, _ := canonicalID(rest)
	return id, true
}

// revyOpsContact returns the canonical contact id of a RevyOps contact path.
func revyOpsContact(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, revyOpsPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	if id, err := strconv.ParseInt(rest, 10, 64); err == nil {
		return strconv.FormatInt(id, 10), true
	}
	return rest, true
}

// Window is one fixed rate-limit window of one API key, as the Skipcall
// sandbox counted it.
type Window struct {
	// Key is the API key whose window it is.
	Key string
	// Start and End bound the window: [Start, End).
	Start, End time.Time
	// Requests is how many requests the window admitted (at most the
	// limit).
	Requests int
	// Limited is how many requests arrived in the window after it was full
	// and were answered 429.
	Limited int
}

// maxWindowHistory bounds how many past windows the limiter keeps for
// Windows; older ones are dropped.
const maxWindowHistory = 10_000

// Windows returns the rate-limit windows the sandbox has opened, past and
// current, oldest first (at most maxWindowHistory past ones), with the
// requests each admitted and refused with 429. It is empty when no rate
// limit is configured. A test asserts "never more than the limit in a
// window" with Requests+Limited (what the clients sent) and the 429 share
// with Limited. The result is a copy.
func (s *Skipcall) Windows() []Window {
	if s.limit == nil {
		return nil
	}
	return s.limit.snapshot()
}

// closeWindow moves w, which ended, to the history; l.mu is held.
func (l *limiter) closeWindow(key string, w *window) {
	if len(l.history) >= maxWindowHistory {
		l.history = l.history[1:]
	}
	l.history = append(l.history, Window{Key: key, Start: w.start, End: w.start.Add(l.window), Requests: w.count, Limited: w.limited})
}

// snapshot returns the past and current windows, oldest first.
func (l *limiter) snapshot() []Window {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Window, 0, len(l.history)+len(l.windows))
	out = append(out, l.history...)
	for k, w := range l.windows {
		out = append(out, Window{Key: k, Start: w.start, End: w.start.Add(l.window), Requests: w.count, Limited: w.limited})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// InFlight returns how many PATCHes for contact (canonical id) are in
// flight at the sandbox now: arrived and not yet answered.
func (c *core) InFlight(contact string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flight.now[contact]
}
