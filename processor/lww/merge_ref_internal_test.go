package lww

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// encodeStateRef is encodeState as it was up to 939314e, encoding a State's
// maps directly: encodeState and appendFields must write its bytes.
func encodeStateRef(st State) []byte {
	fields := st.Fields
	var namesBuf [16]string
	names := namesBuf[:0]
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
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
	var refsBuf [16]uint64
	refs := refsBuf[:0]
	if len(names) > len(refsBuf) {
		refs = make([]uint64, 0, len(names))
	}
	// size is the value's exact length (one allocation, no slack).
	size := 1 + uvarintLen(uint64(len(names)))
	for _, n := range names {
		c := fields[n]
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
		if st.pending(n) {
			ref |= 1
		}
		refs = append(refs, ref)
		size += uvarintLen(uint64(len(n))) + len(n) + uvarintLen(ref)
		if v, ok := st.Values[n]; ok {
			size += uvarintLen(uint64(len(v))+1) + len(v)
		} else {
			size++
		}
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
		b = binary.AppendUvarint(b, uint64(len(k.source)))
		b = append(b, k.source...)
		b = binary.AppendVarint(b, k.applied)
	}
	b = binary.AppendUvarint(b, uint64(len(names)))
	for i, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
		b = binary.AppendUvarint(b, refs[i])
		if v, ok := st.Values[n]; ok {
			b = binary.AppendUvarint(b, uint64(len(v))+1)
			b = append(b, v...)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

// mergeState is the general form of Commit's merge, as Commit did it up to
// 939314e: cur with the applied clocks merged in, as a State (whose
// encodeState is the value written), what the applied clocks overwrote,
// and whether anything changed. mergeFields must write the same bytes and
// report the same; TestMergeFieldsEncodesAsMergeState compares them.
func mergeState(cur State, applied map[string]Clock, values map[string]json.RawMessage, now time.Time) (State, Overwritten, bool) {
	next := cur
	copied := false
	own := func() {
		if copied {
			return
		}
		copied = true
		next.Fields = make(map[string]Clock, len(cur.Fields)+len(applied))
		for n, c := range cur.Fields {
			next.Fields[n] = c
		}
		next.Values = make(map[string]json.RawMessage, len(cur.Fields)+len(applied))
		for n, v := range cur.Values {
			next.Values[n] = v
		}
		next.Pending = slices.Clone(cur.Pending)
	}
	var ow Overwritten
	for name, c := range applied {
		old, ok := cur.Fields[name]
		switch {
		case !ok || c.After(old):
			own()
			c.Applied = now
			next.Fields[name] = c
			if v, ok := values[name]; ok {
				next.Values[name] = v
			} else {
				delete(next.Values, name)
			}
			next.Pending = without(next.Pending, name)
		case c.Equal(old):
			if cur.pending(name) { // the stored value was just sent again
				own()
				next.Pending = without(next.Pending, name)
			}
		default: // a newer value is stored: this PATCH overwrote it
			if _, known := cur.Values[name]; !known {
				ow.Unknown = append(ow.Unknown, name)
				continue
			}
			ow.Fields = append(ow.Fields, name)
			if !cur.pending(name) {
				own()
				next.Pending = append(next.Pending, name)
			}
		}
	}
	slices.Sort(ow.Fields)
	slices.Sort(ow.Unknown)
	slices.Sort(next.Pending)
	return next, ow, copied
}

// without returns names without name (in place).
func without(names []string, name string) []string {
	return slices.DeleteFunc(names, func(n string) bool { return n == name })
}

// randomCase is a stored state, applied clocks and a patch's units for
// Commit's merge, drawn from few names, clocks and values so that every
// case of the merge meets: new, newer, equal, older fields, pending ones,
// fields with and without a known value, a name given twice in the units,
// and more distinct clocks than the encoder's linear table holds.
func randomCase(r *rand.Rand) (State, map[string]Clock, []unit) {
	names := []string{"a", "b", "city", "customFields/x", "customFields/y", "email", "firstName", "z"}
	t := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	clock := func() Clock {
		c := Clock{At: t.Add(time.Duration(r.IntN(4)) * time.Second), ID: fmt.Sprint("e", r.IntN(3))}
		if r.IntN(2) == 0 {
			c.Source = "hubspot"
		}
		return c
	}
	value := func() json.RawMessage {
		return []json.RawMessage{json.RawMessage(`"v"`), json.RawMessage(`1`), json.RawMessage(`{"field_name":"x"}`), {}}[r.IntN(4)]
	}
	var st State
	if r.IntN(4) > 0 {
		st.Fields, st.Values = map[string]Clock{}, map[string]json.RawMessage{}
		for _, n := range names {
			if r.IntN(2) == 0 {
				continue
			}
			c := clock()
			if r.IntN(2) == 0 {
				c.Applied = t.Add(time.Duration(r.IntN(3)) * time.Millisecond)
			}
			st.Fields[n] = c
			if r.IntN(4) > 0 {
				st.Values[n] = value()
				if r.IntN(3) == 0 {
					st.Pending = append(st.Pending, n) // names are in order
				}
			}
		}
		st.Revision = uint64(r.IntN(10))
	}
	applied := map[string]Clock{}
	var us []unit
	for _, n := range names {
		if r.IntN(2) == 0 {
			continue
		}
		applied[n] = clock()
		if r.IntN(5) > 0 {
			us = append(us, unit{name: n, val: value()})
		}
		if r.IntN(6) == 0 { // a RevyOps field_name given twice: the last wins
			us = append(us, unit{name: n, val: value()})
		}
	}
	r.Shuffle(len(us), func(i, j int) { us[i], us[j] = us[j], us[i] })
	return st, applied, us
}

// TestMergeFieldsEncodesAsMergeState: Commit's merge (mergeFields, then
// appendFields) writes the bytes that merging into a State and encoding it
// (mergeState, encodeStateRef: Commit up to 939314e) wrote, reports the
// same overwritten fields, and writes exactly when that did; and
// encodeState writes encodeStateRef's bytes.
func TestMergeFieldsEncodesAsMergeState(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 939314))
	now := time.Date(2026, 12, 3, 0, 0, 0, 987654321, time.UTC)
	for i := range 20000 {
		st, applied, us := randomCase(r)
		values := map[string]json.RawMessage{}
		for _, u := range us {
			values[u.name] = u.val
		}
		if us == nil && r.IntN(2) == 0 {
			values = nil // Commit without a patch
		}
		if got, want := encodeState(st), encodeStateRef(st); !bytes.Equal(got, want) {
			t.Fatalf("case %d: encodeState(%+v)\n= %x\nwant %x", i, st, got, want)
		}
		next, wantOW, wantChanged := mergeState(st, applied, values, now)
		var buf [2 * unitsBuf]field
		fs, ow, changed := mergeFields(buf[:0], st, applied, us, now)
		if changed != wantChanged || !slices.Equal(ow.Fields, wantOW.Fields) || !slices.Equal(ow.Unknown, wantOW.Unknown) {
			t.Fatalf("case %d: mergeFields(%+v, %v) = %+v, %v; want %+v, %v", i, st, applied, ow, changed, wantOW, wantChanged)
		}
		if !changed {
			continue
		}
		var order [2 * unitsBuf]int32
		got := appendFields(make([]byte, 0, r.IntN(64)), fs, sortFields(order[:0], fs))
		if want := encodeStateRef(next); !bytes.Equal(got, want) {
			t.Fatalf("case %d: state %+v, applied %v, units %v:\nmergeFields encodes %x\nmergeState encodes %x", i, st, applied, us, got, want)
		}
	}
}

// TestValuesFindTheLastUnitOfAName: values answers as a scan from the end
// of the units does, for the few units of a typical patch (scanned) and
// for a merged patch of many (indexed), a field given twice included.
func TestValuesFindTheLastUnitOfAName(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 855))
	for range 2000 {
		n := r.IntN(3 * unitsBuf)
		us := make([]unit, n)
		for i := range us {
			us[i] = unit{name: fmt.Sprint("f", r.IntN(n/2+1)), val: json.RawMessage(fmt.Sprint(i))}
		}
		v := newValues(us)
		for k := range n/2 + 2 {
			name := fmt.Sprint("f", k)
			want, wantOK := json.RawMessage(nil), false
			for i := len(us) - 1; i >= 0; i-- {
				if us[i].name == name {
					want, wantOK = us[i].val, true
					break
				}
			}
			if got, ok := v.get(name); ok != wantOK || string(got) != string(want) {
				t.Fatalf("%d units: get(%q) = %s, %v; want %s, %v", n, name, got, ok, want, wantOK)
			}
		}
	}
}
