package lww

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// codecVersion is the first byte of a stored value.
const codecVersion = 1

// encodeFields encodes field clocks compactly. The fields of one event share
// its clock, so the clocks are stored once in a table and each field refers
// to one by index:
//
//	version byte
//	uvarint nclocks, then per clock: varint unix seconds, uvarint nanoseconds,
//	        uvarint len(id), id
//	uvarint nfields, then per field (sorted by name): uvarint len(name),
//	        name, uvarint clock index
func encodeFields(fields map[string]Clock) []byte {
	var namesBuf [16]string
	names := namesBuf[:0]
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
	type key struct {
		sec  int64
		nsec int64
		id   string
	}
	// The clock table: the fields of one event share its clock, so a
	// value holds few distinct clocks, found by a linear scan; index takes
	// over past a few, so a value of many clocks is not quadratic.
	var (
		buf    [4]key
		clocks = buf[:0]
		index  map[key]uint64
	)
	var refsBuf [16]uint64
	refs := refsBuf[:0]
	if len(names) > len(refsBuf) {
		refs = make([]uint64, 0, len(names))
	}
	// size is the value's exact length (one allocation, no slack).
	size := 1 + uvarintLen(uint64(len(names)))
	for _, n := range names {
		c := fields[n]
		k := key{c.At.Unix(), int64(c.At.Nanosecond()), c.ID}
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
			size += varintLen(k.sec) + uvarintLen(uint64(k.nsec)) + uvarintLen(uint64(len(k.id))) + len(k.id)
		}
		refs = append(refs, ix)
		size += uvarintLen(uint64(len(n))) + len(n) + uvarintLen(ix)
	}
	size += uvarintLen(uint64(len(clocks)))
	b := make([]byte, 0, size)
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(len(clocks)))
	for _, k := range clocks {
		b = binary.AppendVarint(b, k.sec)
		b = binary.AppendUvarint(b, uint64(k.nsec))
		b = binary.AppendUvarint(b, uint64(len(k.id)))
		b = append(b, k.id...)
	}
	b = binary.AppendUvarint(b, uint64(len(names)))
	for i, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
		b = binary.AppendUvarint(b, refs[i])
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

// decodeFields decodes what encodeFields wrote; it fails, wrapping
// ErrCorrupt, on anything else.
func decodeFields(b []byte) (map[string]Clock, error) {
	d := decoder{b: b}
	if v := d.byte(); v != codecVersion {
		return nil, fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	nclocks := d.uvarint()
	if nclocks > uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d clocks in %d bytes", ErrCorrupt, nclocks, len(b))
	}
	clocks := make([]Clock, 0, nclocks)
	for range nclocks {
		sec := d.varint()
		nsec := d.uvarint()
		id := d.str()
		if nsec >= uint64(time.Second) {
			d.fail()
		}
		clocks = append(clocks, Clock{At: time.Unix(sec, int64(nsec)).UTC(), ID: id})
	}
	nfields := d.uvarint()
	if nfields > uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d fields in %d bytes", ErrCorrupt, nfields, len(b))
	}
	fields := make(map[string]Clock, nfields)
	for range nfields {
		name := d.str()
		ix := d.uvarint()
		if ix >= uint64(len(clocks)) {
			d.fail()
			break
		}
		fields[name] = clocks[ix]
	}
	if d.bad || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: malformed value of %d bytes", ErrCorrupt, len(b))
	}
	return fields, nil
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
