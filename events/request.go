package events

import (
	"bytes"
	"strconv"
)

// This file is DecodeRequest's one-pass path. The full path checks the
// whole body with checkJSON, then walks it again to find the elements,
// then the members of each event, skipping over every string each time;
// for batches that was most of ingest's decoding. Here the walk that checks
// the JSON (the checker of valid.go) also hands each event's members to the
// same eventDecoder the full path uses, so a valid body is read once before
// the patches are validated. The events' strings and compact patches are
// parts of two copies of the body, made once, instead of a copy each.
//
// It answers only when the whole body is valid JSON, an object or an array
// of 1..maxBatch objects; anything else (a malformed body, an element that
// is not an object, an empty or oversized batch, nesting the checker does
// not follow) is left to the full path, which gives the answer. Events and
// problems are those of the full path: the same decoder sees the same
// members in the same order (FuzzDecodeRequestPaths holds it to that).

// decodeRequestFast is DecodeRequest on b, trimmed of white space, in one
// pass; ok false leaves the answer to the full path.
func decodeRequestFast(b []byte, headerID string, maxBatch int) (evs []Event, array, ok bool, err error) {
	if len(b) == 0 {
		return nil, false, false, nil
	}
	// The events take their strings and patches from copies of the body
	// made once, not from copies of their own.
	sh := &shared{text: string(b), raw: bytes.Clone(b)}
	ck := checker{b: b}
	switch b[0] {
	case '{':
		c := collector{}
		d := eventDecoder{sh: sh}
		if ck.event(0, &d, &c) != len(b) {
			return nil, false, false, nil
		}
		e := d.finish(&c, headerID, true)
		if c.errs != nil {
			return nil, false, true, newValidationError(c.errs)
		}
		return []Event{e}, false, true, nil
	case '[':
		evs, ok, err := ck.batch(maxBatch, sh)
		return evs, true, ok, err
	}
	return nil, false, false, nil
}

// batch decodes the array that is all of ck.b: 1..maxBatch objects, whose
// strings and patches are taken from sh.
func (ck *checker) batch(maxBatch int, sh *shared) ([]Event, bool, error) {
	b := ck.b
	ck.depth = 1
	i := ck.space(1)
	evs := make([]Event, 0, min(maxBatch, 1+len(b)/1024))
	var first map[string]int
	c := collector{}
	for n := 0; ; n++ {
		if n == maxBatch || i >= len(b) || b[i] != '{' {
			return nil, false, nil
		}
		c.index = n
		before := len(c.errs)
		d := eventDecoder{sh: sh}
		if i = ck.event(i, &d, &c); i < 0 {
			return nil, false, nil
		}
		e := d.finish(&c, "", false)
		if e.ID != "" && !hasField(c.errs[before:], nameID) {
			if first == nil {
				first = make(map[string]int, min(maxBatch, 1+len(b)/256))
			}
			if j, dup := first[e.ID]; dup {
				c.add(nameID, "repeats the id of event "+strconv.Itoa(j))
			} else {
				first[e.ID] = n
			}
		}
		evs = append(evs, e)
		if i = ck.space(i); i >= len(b) {
			return nil, false, nil
		}
		switch b[i] {
		case ',':
			i = ck.space(i + 1)
		case ']':
			if i+1 != len(b) {
				return nil, false, nil
			}
			if c.errs != nil {
				return nil, true, newValidationError(c.errs)
			}
			return evs, true, nil
		default:
			return nil, false, nil
		}
	}
}

// event checks the object starting at b[i] == '{' as object does, handing
// each member to d, and returns the index just past it, or -1.
func (ck *checker) event(i int, d *eventDecoder, c *collector) int {
	if ck.depth++; ck.depth > maxCheckDepth {
		return -1
	}
	b := ck.b
	i = ck.space(i + 1)
	if i < len(b) && b[i] == '}' {
		ck.depth--
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		ks := i
		if i = ck.str(i); i < 0 {
			return -1
		}
		k := b[ks:i]
		if i = ck.space(i); i >= len(b) || b[i] != ':' {
			return -1
		}
		vs := ck.space(i + 1)
		// Whether the value holds white space decides whether a patch is
		// compacted or copied.
		spaced := ck.spaced
		ck.spaced = false
		if i = ck.value(vs); i < 0 {
			return -1
		}
		d.member(c, k, b[vs:i], vs, !ck.spaced)
		ck.spaced = ck.spaced || spaced
		if i = ck.space(i); i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = ck.space(i + 1)
		case '}':
			ck.depth--
			return i + 1
		default:
			return -1
		}
	}
}
