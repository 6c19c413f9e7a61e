package events

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// This file is DecodeRequest's one-pass path. The full path checks the
// whole body with checkJSON, then walks it again to find the elements,
// then the members of each event, skipping over every string each time;
// for batches that was most of ingest's decoding. Here the walk that checks
// the JSON (the checker of valid.go) also notes where each event's members
// are, and the same eventDecoder the full path uses decodes them from
// those notes, so a valid body is read once before the patches are
// validated.
//
// The events' strings and compact patches are not copied one by one: the
// envelope's values of the whole body are copied into one string, and the
// body into one buffer that the patches are parts of.
//
// It answers only when the whole body is valid JSON, an object or an array
// of 1..maxBatch objects; anything else (a malformed body, an element that
// is not an object, an empty or oversized batch, nesting the checker does
// not follow) is left to the full path, which gives the answer. Events and
// problems are those of the full path: the same decoder sees the same
// members in the same order (FuzzDecodeRequestPaths holds it to that).

// span is where one member of an event is in the body: its key token is
// b[k0:k1] and its value b[v0:v1]; t is where a copy of the value starts
// in the shared text (-1: the value, an object or array, is not there).
// The members of a patch are noted too: if kids, they are kids[c0:c1] of
// the list of them.
type span struct {
	k0, k1, v0, v1, t, c0, c1 int32
	compact                   bool // the value holds no insignificant white space
	kids                      bool
}

// kid is where one member of a patch is in the body: its key token is
// b[k0:k1] and its value b[v0:v1].
type kid struct{ k0, k1, v0, v1 int32 }

// notes are the spans a decoding noted, kept in notesPool between calls:
// ingest decodes a batch every few milliseconds, and Go zeroes them when it
// allocates them anew.
type notes struct {
	spans []span
	kids  []kid
	ends  []int
}

var notesPool = sync.Pool{New: func() any { return new(notes) }}

// maxKeptKids bounds the notes kept in notesPool: those of a larger batch
// are left to the GC.
const maxKeptKids = 1 << 16

// keep puts nt back in notesPool; nothing may refer to its spans anymore.
func (nt *notes) keep() {
	if cap(nt.kids) <= maxKeptKids {
		notesPool.Put(nt)
	}
}

// patchMembers iterates over the members of a patch: those noted, spans
// into b, if b is set; otherwise those scan finds.
type patchMembers struct {
	scan  members
	b     []byte
	noted []kid
}

// next returns the next member's raw key token (with quotes) and raw value,
// or ok false at the end.
func (p *patchMembers) next() (key, val []byte, ok bool) {
	if p.b == nil {
		return p.scan.next()
	}
	if len(p.noted) == 0 {
		return nil, nil, false
	}
	s := p.noted[0]
	p.noted = p.noted[1:]
	return p.b[s.k0:s.k1], p.b[s.v0:s.v1], true
}

// decodeRequestFast is DecodeRequest on b, trimmed of white space, in one
// pass; ok false leaves the answer to the full path.
func decodeRequestFast(b []byte, headerID string, maxBatch int, inPlace bool) (evs []Event, array, ok bool, err error) {
	if len(b) == 0 || len(b) > math.MaxInt32 {
		return nil, false, false, nil
	}
	ck := checker{b: b}
	// ends[k] is the end in spans of event k's members; kids are the
	// members of the patches.
	nt := notesPool.Get().(*notes)
	defer nt.keep()
	spans, kids, ends := nt.spans[:0], nt.kids[:0], nt.ends[:0]
	switch b[0] {
	case '{':
		var end int
		if end, spans = ck.event(0, spans, &kids); end != len(b) {
			return nil, false, false, nil
		}
		ends = append(ends, len(spans))
	case '[':
		if spans, kids, ends, ok = ck.batch(maxBatch, spans, kids, ends); !ok {
			return nil, false, false, nil
		}
		array = true
	default:
		return nil, false, false, nil
	}
	nt.spans, nt.kids, nt.ends = spans, kids, ends
	sh := share(b, spans, inPlace)
	c := collector{}
	evs = make([]Event, len(ends))
	var first map[string]int
	start := 0
	for n, end := range ends {
		c.index = n
		before := len(c.errs)
		d := eventDecoder{sh: sh}
		for _, s := range spans[start:end] {
			var noted []kid
			if s.kids {
				noted = kids[s.c0:s.c1:s.c1]
			}
			d.member(&c, b[s.k0:s.k1], b[s.v0:s.v1], int(s.v0), int(s.t), s.compact, noted)
		}
		start = end
		if !array {
			evs[0] = d.finish(&c, headerID, true)
			break
		}
		e := d.finish(&c, "", false)
		if e.ID != "" && !hasField(c.errs[before:], nameID) {
			if first == nil {
				first = make(map[string]int, len(ends))
			}
			if j, dup := first[e.ID]; dup {
				c.add(nameID, "repeats the id of event "+strconv.Itoa(j))
			} else {
				first[e.ID] = n
			}
		}
		evs[n] = e
	}
	if c.errs != nil {
		return nil, array, true, newValidationError(c.errs)
	}
	return evs, array, true, nil
}

// share makes the copies of b that the events of spans take their strings
// and patches from: the values that are not objects or arrays, one after
// the other in one string (setting each span's t), and all of b (or b
// itself, inPlace).
func share(b []byte, spans []span, inPlace bool) *shared {
	n := 0
	for _, s := range spans {
		if k := b[s.v0]; k != '{' && k != '[' {
			n += int(s.v1 - s.v0)
		}
	}
	var text strings.Builder
	text.Grow(n)
	for i := range spans {
		s := &spans[i]
		s.t = -1
		if k := b[s.v0]; k != '{' && k != '[' {
			s.t = int32(text.Len())
			text.Write(b[s.v0:s.v1])
		}
	}
	sh := &shared{text: text.String(), raw: b}
	if !inPlace {
		sh.raw = bytes.Clone(b)
	}
	return sh
}

// batch checks the array that is all of ck.b, 1..maxBatch objects, and
// appends to spans the spans of their members, to ends where each object's
// end in spans, and to kids the spans of their patches' members.
func (ck *checker) batch(maxBatch int, spans []span, kids []kid, ends []int) ([]span, []kid, []int, bool) {
	b := ck.b
	ck.depth = 1
	i := ck.space(1)
	// Room for an event per 512 bytes, six members and sixteen in its
	// patch, doubled when the events are 1 KiB.
	n := min(maxBatch, 1+len(b)/512)
	ends = slices.Grow(ends, n)
	spans = slices.Grow(spans, 3*n)
	kids = slices.Grow(kids, 8*n)
	for n := 0; ; n++ {
		if n == maxBatch || i >= len(b) || b[i] != '{' {
			return nil, nil, nil, false
		}
		if i, spans = ck.event(i, spans, &kids); i < 0 {
			return nil, nil, nil, false
		}
		ends = append(ends, len(spans))
		if i = ck.space(i); i >= len(b) {
			return nil, nil, nil, false
		}
		switch b[i] {
		case ',':
			i = ck.space(i + 1)
		case ']':
			if i+1 != len(b) {
				return nil, nil, nil, false
			}
			return spans, kids, ends, true
		default:
			return nil, nil, nil, false
		}
	}
}

// event checks the object starting at b[i] == '{' as object does, adding
// the spans of its members to spans, and returns the index just past it,
// or -1. If kids is not nil, the members of a member "patch" that is an
// object are added to it.
func (ck *checker) event(i int, spans []span, kids *[]kid) (int, []span) {
	if ck.depth++; ck.depth > maxCheckDepth {
		return -1, spans
	}
	b := ck.b
	i = ck.space(i + 1)
	if i < len(b) && b[i] == '}' {
		ck.depth--
		return i + 1, spans
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1, spans
		}
		ks := i
		if i = ck.str(i); i < 0 {
			return -1, spans
		}
		ke := i
		if i = ck.space(i); i >= len(b) || b[i] != ':' {
			return -1, spans
		}
		vs := ck.space(i + 1)
		// Whether the value holds white space decides whether a patch is
		// compacted or copied.
		spaced := ck.spaced
		ck.spaced = false
		sp := span{k0: int32(ks), k1: int32(ke), v0: int32(vs)}
		if kids != nil && vs < len(b) && b[vs] == '{' && string(b[ks:ke]) == `"`+namePatch+`"` {
			sp.kids, sp.c0 = true, int32(len(*kids))
			i, *kids = ck.patch(vs, *kids)
			sp.c1 = int32(len(*kids))
		} else {
			i = ck.value(vs)
		}
		if i < 0 {
			return -1, spans
		}
		sp.v1, sp.compact = int32(i), !ck.spaced
		spans = append(spans, sp)
		ck.spaced = ck.spaced || spaced
		if i = ck.space(i); i >= len(b) {
			return -1, spans
		}
		switch b[i] {
		case ',':
			i = ck.space(i + 1)
		case '}':
			ck.depth--
			return i + 1, spans
		default:
			return -1, spans
		}
	}
}

// patch checks the object starting at b[i] == '{' as object does, adding
// its members to kids, and returns the index just past it, or -1.
func (ck *checker) patch(i int, kids []kid) (int, []kid) {
	if ck.depth++; ck.depth > maxCheckDepth {
		return -1, kids
	}
	b := ck.b
	i = ck.space(i + 1)
	if i < len(b) && b[i] == '}' {
		ck.depth--
		return i + 1, kids
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1, kids
		}
		ks := i
		if i = ck.str(i); i < 0 {
			return -1, kids
		}
		ke := i
		if i = ck.space(i); i >= len(b) || b[i] != ':' {
			return -1, kids
		}
		vs := ck.space(i + 1)
		if i = ck.value(vs); i < 0 {
			return -1, kids
		}
		kids = append(kids, kid{k0: int32(ks), k1: int32(ke), v0: int32(vs), v1: int32(i)})
		if i = ck.space(i); i >= len(b) {
			return -1, kids
		}
		switch b[i] {
		case ',':
			i = ck.space(i + 1)
		case '}':
			ck.depth--
			return i + 1, kids
		default:
			return -1, kids
		}
	}
}
