package lww

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The first byte of a stored value says its format. Version 1 (written
// before values were kept) holds clocks only; it is still read, its fields
// without values. Version 2 is written.
const (
	codecV1      = 1
	codecVersion = 2
)

// encodeState encodes a contact's record compactly: st's clocks, values and
// pending repairs (its Revision is the KV's, not stored). The fields of one
// event share its clock, so the clocks are stored once in a table, with
// what describes the event (source, when applied), and each field refers to
// one by index:
//
//	version byte (2)
//	uvarint nclocks, then per clock: varint unix seconds, uvarint
//	        nanoseconds, uvarint len(id), id, uvarint len(source), source,
//	        varint applied (unix milliseconds, 0: unknown)
//	uvarint nfields, then per field (sorted by name): uvarint len(name),
//	        name, uvarint clock index<<1 | pending, uvarint len(value)+1
//	        (0: no value known), value
//
// Version 1 is the same without source and applied per clock, without the
// pending bit, and without values.
func encodeState(st State) []byte {
	var buf [2 * unitsBuf]field
	fs := buf[:0]
	for n, c := range st.Fields {
		v, known := st.Values[n]
		fs = append(fs, field{name: n, clock: c, pending: st.pending(n), known: known, val: v})
	}
	var orderBuf [2 * unitsBuf]int32
	return appendFields(nil, fs, sortFields(orderBuf[:0], fs))
}

// sortFields appends to dst the index of each of fs, in the order of their
// names: the fields themselves are too large to sort cheaply in place.
func sortFields(dst []int32, fs []field) []int32 {
	for i := range fs {
		dst = append(dst, int32(i))
	}
	slices.SortFunc(dst, func(a, b int32) int { return strings.Compare(fs[a].name, fs[b].name) })
	return dst
}

// appendFields appends to b the encoding of a record of fs, taken in
// order (their indexes sorted by name, see sortFields): encodeState's
// format. b grows at most once, to the exact length.
func appendFields(b []byte, fs []field, order []int32) []byte {
	type key struct {
		sec     int64
		nsec    int64
		id      string
		source  string
		applied int64
	}
	// The clock table: the fields of one event share its clock, so a
	// value holds few distinct clocks, found by a linear scan; index takes
	// over past a few, so a value of many clocks is not quadratic.
	var (
		buf    [4]key
		clocks = buf[:0]
		index  map[key]uint64
	)
	var refsBuf [2 * unitsBuf]uint64
	refs := refsBuf[:0]
	if len(order) > len(refsBuf) {
		refs = make([]uint64, 0, len(order))
	}
	// size is the value's exact length.
	size := 1 + uvarintLen(uint64(len(order)))
	for _, i := range order {
		f := &fs[i]
		c := &f.clock
		var applied int64
		if !c.Applied.IsZero() {
			applied = c.Applied.UnixMilli()
		}
		k := key{c.At.Unix(), int64(c.At.Nanosecond()), c.ID, c.Source, applied}
		ix, ok := uint64(0), false
		if index != nil {
			ix, ok = index[k]
		} else {
			for j := range clocks {
				if clocks[j] == k {
					ix, ok = uint64(j), true
					break
				}
			}
		}
		if !ok {
			ix = uint64(len(clocks))
			clocks = append(clocks, k)
			if index != nil {
				index[k] = ix
			} else if len(clocks) > len(buf) {
				index = make(map[key]uint64, 2*len(clocks))
				for j, k := range clocks {
					index[k] = uint64(j)
				}
			}
			size += varintLen(k.sec) + uvarintLen(uint64(k.nsec)) + uvarintLen(uint64(len(k.id))) + len(k.id) +
				uvarintLen(uint64(len(k.source))) + len(k.source) + varintLen(k.applied)
		}
		ref := ix << 1
		if f.pending {
			ref |= 1
		}
		refs = append(refs, ref)
		size += uvarintLen(uint64(len(f.name))) + len(f.name) + uvarintLen(ref)
		if f.known {
			size += uvarintLen(uint64(len(f.val))+1) + len(f.val)
		} else {
			size++
		}
	}
	size += uvarintLen(uint64(len(clocks)))
	if cap(b)-len(b) < size { // exactly: a stored value has no slack
		b = append(make([]byte, 0, len(b)+size), b...)
	}
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(len(clocks)))
	for _, k := range clocks {
		b = binary.AppendVarint(b, k.sec)
		b = binary.AppendUvarint(b, uint64(k.nsec))
		b = binary.AppendUvarint(b, uint64(len(k.id)))
		b = append(b, k.id...)
		b = binary.AppendUvarint(b, uint64(len(k.source)))
		b = append(b, k.source...)
		b = binary.AppendVarint(b, k.applied)
	}
	b = binary.AppendUvarint(b, uint64(len(order)))
	for i, j := range order {
		f := &fs[j]
		b = binary.AppendUvarint(b, uint64(len(f.name)))
		b = append(b, f.name...)
		b = binary.AppendUvarint(b, refs[i])
		if f.known {
			b = binary.AppendUvarint(b, uint64(len(f.val))+1)
			b = append(b, f.val...)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

// uvarintLen is the length of binary.AppendUvarint's encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// varintLen is the length of binary.AppendVarint's encoding of v.
func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarintLen(u)
}

// decodeState decodes what encodeState wrote, or a version 1 value; it
// fails, wrapping ErrCorrupt, on anything else. The values share b's bytes.
func decodeState(b []byte) (State, error) {
	d := decoder{b: b}
	v := d.byte()
	if v != codecVersion && v != codecV1 {
		return State{}, fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	nclocks := d.uvarint()
	if nclocks > uint64(len(b)) {
		return State{}, fmt.Errorf("%w: %d clocks in %d bytes", ErrCorrupt, nclocks, len(b))
	}
	var clocksBuf [4]Clock
	clocks := clocksBuf[:0]
	if nclocks > uint64(len(clocksBuf)) {
		clocks = make([]Clock, 0, nclocks)
	}
	for range nclocks {
		sec := d.varint()
		nsec := d.uvarint()
		c := Clock{ID: d.str()}
		if v == codecVersion {
			c.Source = d.str()
			if ms := d.varint(); ms != 0 {
				c.Applied = time.UnixMilli(ms).UTC()
			}
		}
		if nsec >= uint64(time.Second) {
			d.fail()
		}
		c.At = time.Unix(sec, int64(nsec)).UTC()
		clocks = append(clocks, c)
	}
	nfields := d.uvarint()
	if nfields > uint64(len(b)) {
		return State{}, fmt.Errorf("%w: %d fields in %d bytes", ErrCorrupt, nfields, len(b))
	}
	st := State{Fields: make(map[string]Clock, nfields)}
	if v == codecVersion {
		st.Values = make(map[string]json.RawMessage, nfields)
	}
	for range nfields {
		name := d.str()
		ref := d.uvarint()
		ix := ref
		if v == codecVersion {
			ix = ref >> 1
		}
		if ix >= uint64(len(clocks)) {
			d.fail()
			break
		}
		st.Fields[name] = clocks[ix]
		if v != codecVersion {
			continue
		}
		if ref&1 != 0 {
			st.Pending = append(st.Pending, name) // names are stored sorted
		}
		if n := d.uvarint(); n > 0 {
			if n-1 > uint64(len(d.b)) {
				d.fail()
				break
			}
			st.Values[name] = d.b[: n-1 : n-1]
			d.b = d.b[n-1:]
		}
	}
	if d.bad || len(d.b) != 0 {
		return State{}, fmt.Errorf("%w: malformed value of %d bytes", ErrCorrupt, len(b))
	}
	return st, nil
}

// decoder reads varints and strings; after a failure every read returns a
// zero value and bad is set.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) fail() { d.bad, d.b = true, nil }

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
