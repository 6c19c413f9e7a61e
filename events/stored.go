package events

import (
	"bytes"
	"time"
)

// decodeStored decodes data if it is a valid event in exactly the form
// Marshal writes for one:
//
//	{"id":"<id>","target":"<target>","contact_id":"<canonical id>",
//	 "occurred_at":"<RFC 3339>","patch":<compact object>[,"structure":"<s>"]}
//
// with no white space outside strings and no escapes in the envelope's
// strings. Otherwise it returns ok false, and Decode falls back to the full
// decoder, which gives the answer; so decodeStored never decides that a
// message is invalid, and what it accepts the full decoder accepts, as the
// same event (FuzzDecodeStored and TestDecodeStoredPoison hold it to that).
//
// What it checks, in one pass, is everything the full decoder checks:
//   - the whole patch with checkJSONFast: JSON grammar, UTF-8, surrogate
//     escapes in pairs, and no white space (so the copy is compact);
//   - the patch against the target's schema, with the same validatePatch;
//   - id, target, contact id (already canonical), occurred_at and structure
//     with the same rules as Validate;
//   - the envelope's punctuation, field order and the end of data, which
//     together leave no room for unknown or repeated fields.
//
// It only skips work that the fixed form makes redundant: finding fields by
// name, unquoting strings with escapes, compacting, and json.Valid's and
// utf8.Valid's separate passes over the envelope's plain ASCII.
func decodeStored(data []byte) (e Event, ok bool) {
	return decodeStoredPatch(data, true)
}

// decodeStoredPatch is decodeStored; copyPatch false leaves the event's
// Patch a sub-slice of data instead of a copy (DecodeShared).
func decodeStoredPatch(data []byte, copyPatch bool) (e Event, ok bool) {
	r := storedReader{b: data}
	r.lit(`{"id":"`)
	e.ID = r.plain()
	r.lit(`,"target":"`)
	// A known target is its constant, not a new string per event; any
	// other is refused below (known), as the conversion would be.
	switch t := r.plainBytes(); string(t) {
	case string(TargetSkipcall):
		e.Target = TargetSkipcall
	case string(TargetRevyOps):
		e.Target = TargetRevyOps
	default:
		e.Target = Target(t)
	}
	r.lit(`,"contact_id":"`)
	e.ContactID = r.plain()
	r.lit(`,"occurred_at":"`)
	at := r.plainBytes()
	r.lit(`,"patch":`)
	patch := r.object()
	if r.bad || idProblem(e.ID) != "" || !e.Target.known() || !canonicalContactID(e.Target, e.ContactID) {
		return Event{}, false
	}
	switch {
	case r.rest(`}`):
	case e.Target == TargetRevyOps && r.rest(`,"structure":"FLAT"}`):
		e.Structure = structureFlat
	case e.Target == TargetRevyOps && r.rest(`,"structure":"NESTED"}`):
		e.Structure = structureNested
	default:
		return Event{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(at))
	if err != nil || t.IsZero() {
		return Event{}, false
	}
	e.OccurredAt = t
	c := collector{}
	validatePatch(&c, e.Target, patch, true)
	if c.errs != nil {
		return Event{}, false
	}
	if copyPatch {
		e.setPatch(patch, true)
	} else {
		e.Patch = patch
		e.checked = markOf(patch) // checked above, and compact: as setPatch marks its copy
	}
	return e, true
}

// canonicalContactID reports whether id is a valid contact id at target
// already in canonical form.
func canonicalContactID(target Target, id string) bool {
	var c, problem string
	switch target {
	case TargetRevyOps:
		c, problem = canonicalRevyOpsID(id)
	case TargetSkipcall:
		c, problem = canonicalSkipcallID(id)
	default:
		return false
	}
	return problem == "" && c == id
}

// storedReader reads the stored form from left to right. Once bad, every
// read returns zero values.
type storedReader struct {
	b   []byte
	i   int
	bad bool
}

// lit consumes s.
func (r *storedReader) lit(s string) {
	if r.bad || !bytes.HasPrefix(r.b[r.i:], []byte(s)) {
		r.bad = true
		return
	}
	r.i += len(s)
}

// plainBytes consumes the rest of a string of printable ASCII other than
// '\\' (so it holds no escapes) and its closing quote, returning the text.
func (r *storedReader) plainBytes() []byte {
	if r.bad {
		return nil
	}
	b := r.b
	start := r.i
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			r.i = i + 1
			return b[start:i]
		case !plainStringByte[c]:
			r.bad = true
			return nil
		}
	}
	r.bad = true
	return nil
}

// plain is plainBytes as a string.
func (r *storedReader) plain() string {
	return string(r.plainBytes())
}

// object consumes a compact, valid JSON object and returns it.
func (r *storedReader) object() []byte {
	if r.bad || r.i >= len(r.b) || r.b[r.i] != '{' {
		r.bad = true
		return nil
	}
	c := checker{b: r.b}
	end := c.object(r.i)
	if end < 0 || c.spaced {
		r.bad = true
		return nil
	}
	v := r.b[r.i:end]
	r.i = end
	return v
}

// rest reports whether what is left is exactly s.
func (r *storedReader) rest(s string) bool {
	return !r.bad && string(r.b[r.i:]) == s
}
