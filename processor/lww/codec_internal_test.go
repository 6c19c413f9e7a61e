package lww

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
)

// encodeFields encodes a record of clocks only.
func encodeFields(fields map[string]Clock) []byte { return encodeState(State{Fields: fields}) }

// decodeFields decodes a record's clocks.
func decodeFields(b []byte) (map[string]Clock, error) {
	st, err := decodeState(b)
	return st.Fields, err
}

// storedValue builds a version 1 stored value field by field: one clock
// (sec, nsec, id "e") and one field "a" pointing at clock index ix.
func storedValue(nsec, ix uint64) []byte {
	b := []byte{codecV1}
	b = binary.AppendUvarint(b, 1)
	b = binary.AppendVarint(b, 1795600800)
	b = binary.AppendUvarint(b, nsec)
	b = binary.AppendUvarint(b, 1)
	b = append(b, 'e')
	b = binary.AppendUvarint(b, 1)
	b = binary.AppendUvarint(b, 1)
	b = append(b, 'a')
	return binary.AppendUvarint(b, ix)
}

// TestDecodeRefusesWhatEncodeNeverWrites guards decodeFields' promise,
// "it fails, wrapping ErrCorrupt, on anything else" than what encodeFields
// wrote, at the edges a boundary slip would let through: nanoseconds of a
// whole second, a clock index one past the table (a panic if read), and a
// value cut after its version byte (read as an empty state otherwise).
func TestDecodeRefusesWhatEncodeNeverWrites(t *testing.T) {
	t.Parallel()
	if got, err := decodeFields(storedValue(999_999_999, 0)); err != nil || !got["a"].At.Equal(time.Unix(1795600800, 999_999_999)) || got["a"].ID != "e" {
		t.Fatalf("the largest nanoseconds: %v, %v; want field a at .999999999 by e", got, err)
	}
	for name, b := range map[string][]byte{
		"nanoseconds of a whole second": storedValue(uint64(time.Second), 0),
		"clock index past the table":    storedValue(0, 1),
		"cut after the version":         {codecVersion},
		"cut after the version 1":       {codecV1},
		"unknown version":               {3, 0, 0},
		"cut after the clock count":     storedValue(0, 0)[:2],
		"empty":                         {},
	} {
		got, err := decodeFields(b)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s (% x): decoded as %v, %v; want ErrCorrupt", name, b, got, err)
		}
	}
}

// TestWriteStringIsJSON guards writeString's fast path: whatever the key,
// it writes exactly what encoding/json (without HTML escaping) writes, so
// a key made only of characters that need escaping, or of bytes that are
// not UTF-8, is escaped like any other.
func TestWriteStringIsJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", "plain_key", "with space", " ", "<&>", "\x7f", "é", "日本",
		`a"b`, `"`, `""`, `\`, `\\`, "\x01", "\x01\x1f", "tab\there", "\xff", "\xff\xfe",
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		want.Truncate(want.Len() - 1)
		var got bytes.Buffer
		writeString(&got, s)
		if got.String() != want.String() {
			t.Errorf("writeString(%q) = %q, want %q", s, got.String(), want.String())
		}
	}
}

// TestScannersRefuseBlankInput guards the scanners' first check: input
// with no value at all (empty, or blanks only) is not an object, not an
// array, and never an index out of range.
func TestScannersRefuseBlankInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "  ", "\n\t"} {
		err := eachMember([]byte(in), func(string, json.RawMessage) error { return nil })
		if !errors.Is(err, errNotObject) {
			t.Errorf("eachMember(%q) = %v, want errNotObject", in, err)
		}
		err = eachElement([]byte(in), func(int, json.RawMessage) error { return nil })
		if !errors.Is(err, errNotArray) {
			t.Errorf("eachElement(%q) = %v, want errNotArray", in, err)
		}
	}
}

// TestCustomFieldErrorNamesTheItem guards the index eachElement passes on:
// a RevyOps custom field without a field_name is named by its position in
// the array, counting from 0.
func TestCustomFieldErrorNamesTheItem(t *testing.T) {
	t.Parallel()
	patch := []byte(`{"contact_custom_fields":[{"field_name":"tier","field_value":"gold"},{"field_name":"size","field_value":1},{"field_value":2}]}`)
	_, err := units(nil, events.TargetRevyOps, patch, false)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "contact_custom_fields[2] has no string field_name") {
		t.Fatalf("units of a patch whose third custom field has no name: %v; want ErrInvalid naming contact_custom_fields[2]", err)
	}
}

// TestSkipStringStopsAtTheEnd guards skipString on a string that never
// closes: it returns the input's length instead of reading past it.
func TestSkipStringStopsAtTheEnd(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{`"abc"`: 5, `"a\"b",`: 6, `"abc`: 4, `"a\`: 3, `"`: 1} {
		if got := skipString([]byte(in), 0); got != want {
			t.Errorf("skipString(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestSkipValueStopsAtTheEnd guards skipValue on input that ends inside a
// value (an object or array never closed, a scalar at the very end): it
// returns the input's length instead of reading past it.
func TestSkipValueStopsAtTheEnd(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{
		`{"a":[1,2]},`: 11, `{"a":1`: 6, `[[1]`: 4, `123`: 3, `true,`: 4, `null}`: 4, `-1.5e3`: 6,
	} {
		if got := skipValue([]byte(in), 0); got != want {
			t.Errorf("skipValue(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestEncodeFieldsRoundTrip: every field's clock survives encoding, with a
// shared clock stored once, for values of one to many distinct clocks
// (past the few encodeFields finds by scanning) and many fields.
func TestEncodeFieldsRoundTrip(t *testing.T) {
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, nclocks := range []int{1, 2, 4, 5, 9, 40} {
		fields := map[string]Clock{}
		for i := range 3 * nclocks {
			c := i % nclocks
			fields["f"+strconv.Itoa(i)] = Clock{At: base.Add(time.Duration(c) * time.Millisecond), ID: "e" + strconv.Itoa(c)}
		}
		if nclocks == 2 { // a clock before 1970, and a long id: lengths of every size
			fields["early"] = Clock{At: time.Date(1901, 1, 1, 0, 0, 0, 999999999, time.UTC), ID: strings.Repeat("i", 300)}
		}
		b := encodeFields(fields)
		if len(b) != cap(b) {
			t.Errorf("%d clocks: value of %d bytes in %d allocated", nclocks, len(b), cap(b))
		}
		got, err := decodeFields(b)
		if err != nil {
			t.Fatalf("%d clocks: %v", nclocks, err)
		}
		if len(got) != len(fields) {
			t.Fatalf("%d clocks: %d fields back, want %d", nclocks, len(got), len(fields))
		}
		for n, c := range fields {
			if !got[n].Equal(c) {
				t.Fatalf("%d clocks: field %s: %v, want %v", nclocks, n, got[n], c)
			}
		}
		d := decoder{b: b[1:]}
		want := nclocks
		if nclocks == 2 {
			want++
		}
		if n := d.uvarint(); n != uint64(want) {
			t.Fatalf("%d clocks stored as %d", nclocks, n)
		}
	}
}
