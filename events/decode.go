package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultMaxBatch is the batch limit used when Limits.MaxBatch is not
// positive.
const DefaultMaxBatch = 1000

// Limits bound what DecodeRequest accepts.
type Limits struct {
	// MaxBatch is the most events one array may hold; <= 0 means
	// DefaultMaxBatch.
	MaxBatch int
}

// maxBatch returns the effective batch limit.
func (l Limits) maxBatch() int {
	if l.MaxBatch <= 0 {
		return DefaultMaxBatch
	}
	return l.MaxBatch
}

// DecodeRequest parses an ingest request body holding one event object or a
// JSON array of event objects, and validates every event.
//
// headerID (from the webhook-id or Idempotency-Key header, may be "")
// supplies the id of a single event whose "id" is missing; if both are
// present and differ, that is a problem on "id". headerID is ignored for an
// array: each element needs its own id, and ids must be distinct within the
// array (a repeat is reported on the later event's "id").
//
// It returns the validated events, with contact ids canonicalised and
// patches compacted into new memory (they do not alias body; the events of
// one body may share that memory, so one event kept keeps all of it), and
// whether the body was an array. The error either wraps ErrMalformed (body not valid
// JSON or UTF-8, holding unpaired surrogate escapes, or not an object or
// array of objects; the message gives the offset or element) or is a
// *ValidationError listing every problem of every event: a batch is
// accepted or rejected as a whole. An empty array and an array of more than
// lim.MaxBatch events are problems with Index 0 and Field "".
func DecodeRequest(body []byte, headerID string, lim Limits) ([]Event, bool, error) {
	b := trimSpace(body)
	if evs, array, ok, err := decodeRequestFast(b, headerID, lim.maxBatch(), false); ok {
		return evs, array, err
	}
	return decodeRequestFull(b, headerID, lim)
}

// DecodeRequestInPlace is DecodeRequest, except that the patches of the
// events it returns may be parts of body rather than copies: body must not
// change while they are in use. It spares a copy of body for callers that
// are done with the events before they reuse it, as ingest is.
func DecodeRequestInPlace(body []byte, headerID string, lim Limits) ([]Event, bool, error) {
	b := trimSpace(body)
	if evs, array, ok, err := decodeRequestFast(b, headerID, lim.maxBatch(), true); ok {
		return evs, array, err
	}
	return decodeRequestFull(b, headerID, lim)
}

// decodeRequestFull is DecodeRequest on b, trimmed of white space, without
// the one-pass path: it decides every body that path leaves to it.
func decodeRequestFull(b []byte, headerID string, lim Limits) ([]Event, bool, error) {
	compacted, err := checkJSON(b)
	if err != nil {
		return nil, false, err
	}
	switch b[0] {
	case '{':
		c := collector{}
		e := decodeEvent(&c, b, headerID, true, compacted)
		if c.errs != nil {
			return nil, false, newValidationError(c.errs)
		}
		return []Event{e}, false, nil
	case '[':
		evs, err := decodeBatch(b, lim.maxBatch(), compacted)
		return evs, true, err
	}
	return nil, false, fmt.Errorf("%w: body must be an object or an array of objects, not %s", ErrMalformed, kindOf(b))
}

// decodeBatch decodes and validates the events of arr, a valid JSON array;
// compacted says arr holds no insignificant white space.
func decodeBatch(arr []byte, maxBatch int, compacted bool) ([]Event, error) {
	// One pass finds the elements (and counts past the limit, to say how
	// many there were); the events are decoded from what it kept.
	var els [][]byte
	n := 0
	for it := newElements(arr); ; n++ {
		el, ok := it.next()
		if !ok {
			break
		}
		if k := kindOf(el); k != kindObject {
			return nil, fmt.Errorf("%w: element %d of the array is %s, not an object", ErrMalformed, n, k)
		}
		if n < maxBatch {
			if els == nil {
				els = make([][]byte, 0, min(maxBatch, 1+len(arr)/256))
			}
			els = append(els, el)
		}
	}
	switch {
	case n == 0:
		return nil, newValidationError([]FieldError{{Field: "", Reason: "batch must hold at least one event"}})
	case n > maxBatch:
		reason := "batch holds " + strconv.Itoa(n) + " events; the limit is " + strconv.Itoa(maxBatch)
		return nil, newValidationError([]FieldError{{Field: "", Reason: reason}})
	}
	evs := make([]Event, 0, n)
	first := make(map[string]int, n)
	c := collector{}
	for i, el := range els {
		c.index = i
		before := len(c.errs)
		e := decodeEvent(&c, el, "", false, compacted)
		if e.ID != "" && !hasField(c.errs[before:], nameID) {
			if j, dup := first[e.ID]; dup {
				c.add(nameID, "repeats the id of event "+strconv.Itoa(j))
			} else {
				first[e.ID] = i
			}
		}
		evs = append(evs, e)
	}
	if c.errs != nil {
		return nil, newValidationError(c.errs)
	}
	return evs, nil
}

// Decode strictly decodes and validates one stored event, as the worker
// reads it from the stream. Its errors wrap ErrInvalid: a message that is not
// a valid JSON object also wraps ErrMalformed, and one that fails validation
// is a *ValidationError.
//
// Decode checks every message in full, whoever published it: a message
// written to the stream around ingest is held to the same rules as a
// request body. It is cheap for messages in the form Marshal writes (see
// decodeStored, which checks that form in one pass); any other message, and
// every invalid one, goes through the same decoder as DecodeRequest, so the
// answer, the event and the error are those of that decoder.
func Decode(data []byte) (Event, error) {
	if e, ok := decodeStored(data); ok {
		return e, nil
	}
	return decodeFull(data)
}

// DecodeShared is Decode for a caller that owns data and leaves it
// unchanged while the event is in use (the worker, with a message's data
// that the NATS client allocated for it alone): the event's Patch may be a
// sub-slice of data instead of a copy. The event, the answer and the error
// are Decode's.
func DecodeShared(data []byte) (Event, error) {
	if e, ok := decodeStoredPatch(data, false); ok {
		return e, nil
	}
	return decodeFull(data)
}

// decodeFull is Decode without the fast path for the stored form.
func decodeFull(data []byte) (Event, error) {
	b := trimSpace(data)
	compacted, err := checkJSON(b)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if k := kindOf(b); k != kindObject {
		return Event{}, fmt.Errorf("%w: %w: event must be an object, not %s", ErrInvalid, ErrMalformed, k)
	}
	c := collector{}
	e := decodeEvent(&c, b, "", false, compacted)
	if c.errs != nil {
		return Event{}, newValidationError(c.errs)
	}
	return e, nil
}

// checkJSON returns an error wrapping ErrMalformed unless b is one valid
// JSON value in valid UTF-8 without unpaired surrogate escapes. compacted
// reports that b holds no insignificant white space (false when unknown).
func checkJSON(b []byte) (compacted bool, err error) {
	if ok, spaced := checkJSONFast(b); ok {
		return !spaced, nil
	}
	if len(b) == 0 {
		return false, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	if !utf8.Valid(b) {
		off := 0
		for off < len(b) {
			r, size := utf8.DecodeRune(b[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return false, fmt.Errorf("%w: invalid UTF-8 at offset %d", ErrMalformed, off)
	}
	if !json.Valid(b) {
		var raw json.RawMessage
		err := json.Unmarshal(b, &raw)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return false, fmt.Errorf("%w: %s at offset %d", ErrMalformed, se.Error(), se.Offset)
		}
		return false, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if off := unpairedSurrogate(b); off >= 0 {
		return false, fmt.Errorf("%w: unpaired UTF-16 surrogate escape at offset %d", ErrMalformed, off)
	}
	return false, nil
}

// decodeEvent decodes obj, a valid JSON object, into an Event and validates
// it, recording problems in c. If single, headerID may supply the id.
// compacted says obj holds no insignificant white space, so the patch is
// copied rather than compacted.
func decodeEvent(c *collector, obj []byte, headerID string, single, compacted bool) Event {
	var d eventDecoder
	it := newMembers(obj)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		d.member(c, k, v, 0, -1, compacted, nil)
	}
	return d.finish(c, headerID, single)
}

// eventDecoder holds an event while its members are decoded, in order, by
// member; finish checks it.
type eventDecoder struct {
	e          Event
	seen, bad  fieldSet
	contactRaw []byte
	contactOff int // where a copy of contactRaw starts in sh.text, or -1
	// sh, if set, holds copies of the text the members are slices of: the
	// event's strings and patch are taken from them rather than copied.
	sh *shared
	// patchKids, if not nil, are the noted members of the patch (spans
	// into sh.raw).
	patchKids []kid
}

// shared holds the copies of a request body made once for all its events:
// text holds values of its members (strings and numbers), raw all of it.
type shared struct {
	text string
	raw  []byte
}

// plain returns the contents of v, a valid JSON token, from d.sh.text where
// a copy of v starts at t (t < 0: there is none), if v is a string without
// escapes and d.sh is set.
func (d *eventDecoder) plain(v []byte, t int) (string, bool) {
	if d.sh == nil || t < 0 || len(v) < 2 || v[0] != '"' || bytes.IndexByte(v[1:len(v)-1], '\\') >= 0 {
		return "", false
	}
	return d.sh.text[t+1 : t+len(v)-1], true
}

// member decodes the member with raw key token k and raw value v, a valid
// JSON value, recording problems in c. If d.sh is set, v is at offset off
// of the text d.sh.raw copies, and a copy of v starts at t of d.sh.text
// (t < 0: there is none). compacted says v holds no insignificant white
// space, so a patch is copied rather than compacted. kids, if not nil,
// are the members of v, an object, noted at offsets of d.sh.raw.
func (d *eventDecoder) member(c *collector, k, v []byte, off, t int, compacted bool, kids []kid) {
	name := keyBytes(k)
	f := envelopeField(name)
	if f == 0 {
		c.add(string(name), "unknown field")
		return
	}
	if d.seen&f != 0 {
		c.add(string(name), "duplicate field")
		d.bad |= f
		return
	}
	d.seen |= f
	e := &d.e
	ok := true
	switch f {
	case fID:
		if s, plain := d.plain(v, t); plain {
			e.ID = s
		} else {
			e.ID, ok = stringField(c, nameID, v)
		}
	case fTarget:
		e.Target, ok = targetField(c, v)
	case fContactID:
		d.contactRaw, d.contactOff = v, t
	case fOccurredAt:
		if s, plain := d.plain(v, t); plain {
			e.OccurredAt, ok = parseTime(c, s)
		} else {
			e.OccurredAt, ok = timeField(c, v)
		}
	case fPatch:
		switch kd := kindOf(v); {
		case kd != kindObject:
			c.add(namePatch, "must be an object, not "+kd.String())
			ok = false
		case compacted && d.sh != nil:
			// Already compact: the copy's bytes, as setPatch would copy
			// them, and only as long (appending reallocates).
			e.Patch = d.sh.raw[off : off+len(v) : off+len(v)]
			e.checked = markOf(e.Patch)
		default:
			e.setPatch(v, compacted)
		}
		if ok && d.sh != nil {
			d.patchKids = kids
		}
	case fStructure:
		if s, plain := d.plain(v, t); plain {
			e.Structure = s
		} else {
			e.Structure, ok = stringField(c, nameStructure, v)
		}
		if ok && e.Structure == "" {
			c.add(nameStructure, `must be "FLAT" or "NESTED"`)
			ok = false
		}
	}
	if !ok {
		d.bad |= f
	}
}

// finish checks the decoded event, recording problems in c, and returns
// it. If single, headerID may supply the id.
func (d *eventDecoder) finish(c *collector, headerID string, single bool) Event {
	e := &d.e
	if d.contactRaw != nil && d.bad&fContactID == 0 {
		s, ok := d.plain(d.contactRaw, d.contactOff)
		switch {
		case ok:
		case d.sh != nil && d.contactOff >= 0 && kindOf(d.contactRaw) == kindNumber && e.Target != TargetSkipcall:
			s, ok = d.sh.text[d.contactOff:d.contactOff+len(d.contactRaw)], true
		default:
			s, ok = contactIDField(c, e.Target, d.contactRaw)
		}
		e.ContactID = s
		if !ok {
			d.bad |= fContactID
		}
	}
	if single && headerID != "" {
		switch {
		case d.seen&fID == 0:
			e.ID = headerID
		case d.bad&fID == 0 && e.ID != headerID:
			c.add(nameID, "differs from the id in the webhook-id or Idempotency-Key header")
			d.bad |= fID
		}
	}
	noted := patchMembers{}
	if d.patchKids != nil {
		noted = patchMembers{b: d.sh.raw, noted: d.patchKids}
	}
	e.validate(c, d.bad, true, noted)
	return *e
}

// envelopeField returns the bit of the envelope field name, or 0.
func envelopeField(name []byte) fieldSet {
	switch string(name) {
	case nameID:
		return fID
	case nameTarget:
		return fTarget
	case nameContactID:
		return fContactID
	case nameOccurredAt:
		return fOccurredAt
	case namePatch:
		return fPatch
	case nameStructure:
		return fStructure
	}
	return 0
}

// stringField returns the string v holds, or records a problem on field.
func stringField(c *collector, field string, v []byte) (string, bool) {
	if k := kindOf(v); k != kindString {
		c.add(field, "must be a string, not "+k.String())
		return "", false
	}
	s, _ := unquote(v)
	return s, true
}

// targetField returns the target v holds, or records a problem on target.
// The known targets, written without escapes, are not copied.
func targetField(c *collector, v []byte) (Target, bool) {
	switch string(v) {
	case `"` + string(TargetSkipcall) + `"`:
		return TargetSkipcall, true
	case `"` + string(TargetRevyOps) + `"`:
		return TargetRevyOps, true
	}
	s, ok := stringField(c, nameTarget, v)
	return Target(s), ok
}

// timeField returns the RFC 3339 time v holds, or records a problem on
// occurred_at.
func timeField(c *collector, v []byte) (time.Time, bool) {
	s, ok := stringField(c, nameOccurredAt, v)
	if !ok {
		return time.Time{}, false
	}
	return parseTime(c, s)
}

// parseTime returns the RFC 3339 time s, or records a problem on
// occurred_at.
func parseTime(c *collector, s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		c.add(nameOccurredAt, "must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z")
		return time.Time{}, false
	}
	return t, true
}

// contactIDField returns the contact id v holds for target, or records a
// type problem on contact_id: RevyOps ids may be JSON numbers, Skipcall ids
// must be strings. Values are checked later, by validate.
func contactIDField(c *collector, target Target, v []byte) (string, bool) {
	switch k := kindOf(v); {
	case k == kindString:
		s, _ := unquote(v)
		return s, true
	case k == kindNumber && target != TargetSkipcall:
		return string(v), true
	case target == TargetSkipcall:
		c.add(nameContactID, "must be a string, not "+k.String())
	case target == TargetRevyOps:
		c.add(nameContactID, "must be an integer or a string of digits, not "+k.String())
	default:
		c.add(nameContactID, "must be a string or an integer, not "+k.String())
	}
	return "", false
}

// hasField reports whether errs holds a problem on field.
func hasField(errs []FieldError, field string) bool {
	for _, f := range errs {
		if f.Field == field {
			return true
		}
	}
	return false
}

// newValidationError sorts errs by Index then Field and wraps them.
func newValidationError(errs []FieldError) *ValidationError {
	slices.SortStableFunc(errs, func(a, b FieldError) int {
		if a.Index != b.Index {
			return a.Index - b.Index
		}
		return strings.Compare(a.Field, b.Field)
	})
	return &ValidationError{Errors: errs}
}
