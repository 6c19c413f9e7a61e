package lww

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/patchbay/patchbay/events"
)

// Clock orders changes to a field: the change that occurred later at the
// source wins; for equal times, the greater event id wins, so every replica
// picks the same winner. The zero Clock is older than any change with a
// non-zero time.
//
// Source and Applied describe the change for display (which source sent it,
// when the Store recorded it); they take no part in the order, and Equal
// and After ignore them.
type Clock struct {
	// At is the event's occurred_at.
	At time.Time
	// ID is the event's id.
	ID string
	// Source names where the event came from, when known; the Store keeps
	// it with the clock.
	Source string
	// Applied is when Commit recorded the change (millisecond precision);
	// zero in a clock that was not read from the Store, and in clocks
	// stored by a version that did not record it.
	Applied time.Time
}

// After reports whether c is newer than o: a later At, or an equal At and a
// greater ID. A clock is not After itself, so a redelivered change is never
// newer than its own applied clock.
func (c Clock) After(o Clock) bool {
	if !c.At.Equal(o.At) {
		return c.At.After(o.At)
	}
	return c.ID > o.ID
}

// ClockOf returns the clock of ev.
// The event carries no source yet: Source is left empty.
func ClockOf(ev *events.Event) Clock {
	return Clock{At: ev.OccurredAt, ID: ev.ID}
}

// Change is one patch to one contact with the clock of the event that made
// it.
type Change struct {
	// Patch is the provider's PATCH body, a JSON object valid for the target.
	Patch json.RawMessage
	// Clock is the event's clock; every field of Patch carries it.
	Clock Clock
	// Valid says Patch is known to be valid JSON (a decoded
	// events.Event's patch, checked when it was decoded): Merge does not
	// check its grammar again, only its fields.
	Valid bool
}

// State is what the Store keeps per (target, contact): the clock of the
// value last applied for each field, that value, the fields owed a repair,
// and the KV revision it was read at (0: no entry).
type State struct {
	Fields map[string]Clock
	// Values holds, per field, the JSON that set it at the provider (as
	// Fields' units: a top-level value, a Skipcall customFields member's
	// value, a whole RevyOps contact_custom_fields item). A field without
	// an entry has no known value: it was stored by a version that kept
	// only clocks. The values share the bytes the Store read; they are
	// personal data: never log them.
	Values map[string]json.RawMessage
	// Pending lists, sorted, the fields whose stored value the provider
	// may not hold: a PATCH sent on an older read overwrote it there (see
	// Store.Commit). Filter puts their stored values into the next PATCH
	// for the contact, whose Commit clears them.
	Pending  []string
	Revision uint64
}

// pending reports whether field name is in st.Pending.
func (st State) pending(name string) bool {
	for _, p := range st.Pending {
		if p == name {
			return true
		}
	}
	return false
}

// Errors. Each is wrapped with details; test with errors.Is.
var (
	// ErrInvalid means a patch is not a JSON object of the target's shape
	// (for example customFields not an object, a contact_custom_fields item
	// without a string field_name), a field has no clock, the target is
	// unknown, or a target or contact id cannot form a KV key. It is a
	// permanent error: retrying the same input fails the same way.
	ErrInvalid = errors.New("lww: invalid input")
	// ErrConflict means Commit lost the revision compare-and-set race more
	// often than its bound allows. The provider has applied the PATCH; the
	// clocks are not stored, so a later older event could be sent again.
	ErrConflict = errors.New("lww: commit conflict")
	// ErrCorrupt means a stored value cannot be decoded.
	ErrCorrupt = errors.New("lww: corrupt stored state")
)

// Equal reports whether c and o are the same clock: the same instant (in any
// location) and the same ID. Use it rather than ==, which also compares the
// time's location and monotonic reading.
func (c Clock) Equal(o Clock) bool {
	return c.At.Equal(o.At) && c.ID == o.ID
}
