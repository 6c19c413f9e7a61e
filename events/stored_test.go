package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/patchbay/patchbay/events"
)

// referenceMarshal is Marshal as it was before the hand-written encoder:
// encoding/json with HTML escaping off. Events stored by earlier versions
// are in this form.
func referenceMarshal(e *events.Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// storedSeeds are request bodies of valid events covering both targets,
// structure, escapes and non-ASCII text in the patch.
func storedSeeds() []string {
	return []string{
		sc(), ro(), ro("structure", `"FLAT"`), ro("structure", `"NESTED"`, "contact_id", `"0042"`),
		sc("contact_id", jstr(uuidUpper), "occurred_at", `"2024-05-01T14:30:00.123456789+02:00"`),
		scPatch(`{"firstName":"Zoë \u00e9 \ud83d\ude00 \"q\" \\ \/ \n","lastName":"<&>\u2028",` +
			`"phoneNumbers":["+33612345678"],"customFields":{"a":"b"},"allowPhoneCalls":false}`),
		roPatch(`{"company_id":"acme.com","contact_custom_fields":[{"field_name":"a","field_value":null}]}`),
		roPatch(`{"company_id":12345,"first_name":""}`),
		benchEvent(7),
	}
}

// storedForms returns the stored form of every seed, as ingest writes it.
func storedForms(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, body := range storedSeeds() {
		evs, _, err := events.DecodeRequest([]byte(body), "", events.Limits{})
		if err != nil {
			t.Fatalf("seed %s: %v", body, err)
		}
		data, err := evs[0].Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// assertDecodeAgrees fails t unless Decode answers data exactly as the full
// decoder does, and the stored-form fast path accepts only what the full
// decoder accepts, as the same event. It reports whether the fast path
// accepted data.
func assertDecodeAgrees(t testing.TB, data []byte) (fast bool) {
	t.Helper()
	full, fullErr := events.DecodeFull(data)
	got, err := events.Decode(data)
	switch {
	case (err == nil) != (fullErr == nil):
		t.Fatalf("Decode(%q) error = %v, full decoder's = %v", data, err, fullErr)
	case err != nil && err.Error() != fullErr.Error():
		t.Fatalf("Decode(%q) error = %q, full decoder's = %q", data, err, fullErr)
	case err == nil:
		assertEqualEvents(t, full, got)
	}
	shared, sharedErr := events.DecodeShared(data)
	switch {
	case (sharedErr == nil) != (fullErr == nil):
		t.Fatalf("DecodeShared(%q) error = %v, full decoder's = %v", data, sharedErr, fullErr)
	case sharedErr != nil && sharedErr.Error() != fullErr.Error():
		t.Fatalf("DecodeShared(%q) error = %q, full decoder's = %q", data, sharedErr, fullErr)
	case sharedErr == nil:
		assertEqualEvents(t, full, shared)
	}
	quick, ok := events.DecodeStored(data)
	if ok {
		if fullErr != nil {
			t.Fatalf("stored-form path accepts %q, which the full decoder rejects: %v", data, fullErr)
		}
		assertEqualEvents(t, full, quick)
	}
	return ok
}

// TestDecodeStoredForm checks that what ingest stores takes the fast path,
// including events stored by the encoding/json encoder of earlier versions,
// except an id with escapes, which the full decoder reads.
func TestDecodeStoredForm(t *testing.T) {
	e := events.Event{ID: `a"b\c`, Target: events.TargetRevyOps, ContactID: "1",
		OccurredAt: time.Now(), Patch: json.RawMessage(`{"first_name":"A"}`)}
	escaped, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if fast := assertDecodeAgrees(t, escaped); fast {
		t.Errorf("stored form %s takes the fast path", escaped)
	}
	if _, err := events.Decode(escaped); err != nil {
		t.Fatalf("Decode(%s): %v", escaped, err)
	}
	for _, data := range storedForms(t) {
		e, err := events.Decode(data)
		if err != nil {
			t.Fatalf("Decode(%s): %v", data, err)
		}
		old, err := referenceMarshal(&e)
		if err != nil || !bytes.Equal(old, data) {
			t.Fatalf("encoding/json stores %s, %v; Marshal %s", old, err, data)
		}
		if !assertDecodeAgrees(t, data) {
			t.Errorf("stored form %s does not take the fast path", data)
		}
		// DecodeShared's patch is data's own bytes, and still marked
		// checked: Marshal writes the stored form back unchanged.
		shared, err := events.DecodeShared(data)
		if err != nil {
			t.Fatalf("DecodeShared(%s): %v", data, err)
		}
		if p := &shared.Patch[0]; !inside(p, data) {
			t.Errorf("DecodeShared(%s): the patch is a copy", data)
		}
		if again, err := shared.Marshal(); err != nil || !bytes.Equal(again, data) {
			t.Errorf("Marshal of DecodeShared(%s) = %s, %v", data, again, err)
		}
	}
}

// inside reports whether p points into b.
func inside(p *byte, b []byte) bool {
	for i := range b {
		if p == &b[i] {
			return true
		}
	}
	return false
}

// TestDecodeStoredPoison mutates stored events at every byte (replacing,
// deleting, doubling the byte, and inserting white space) as a publisher
// writing around ingest might, and checks that Decode's answer, event and
// error are the full decoder's for each. Messages stay invalid whatever path
// they take, so the worker dead-letters them.
func TestDecodeStoredPoison(t *testing.T) {
	subs := []byte{'"', '\\', ' ', '}', ',', '0', 'F', 0x00, 0x80, 0xff}
	var total, invalid, fast int
	check := func(m []byte) {
		total++
		if assertDecodeAgrees(t, m) {
			fast++
		}
		if _, err := events.DecodeFull(m); err != nil {
			invalid++
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Decode(%q) error %v does not wrap ErrInvalid", m, err)
			}
		}
	}
	for _, data := range storedForms(t) {
		if len(data) > 600 {
			continue // the ~1 KiB bench event adds time, not cases
		}
		for i := range data {
			for _, c := range subs {
				if c == data[i] {
					continue
				}
				m := bytes.Clone(data)
				m[i] = c
				check(m)
			}
			check(append(bytes.Clone(data[:i]), data[i+1:]...))
			check(append(bytes.Clone(data[:i+1]), data[i:]...))
			check(append(append(bytes.Clone(data[:i]), ' '), data[i:]...))
		}
	}
	// The mutants must exercise both outcomes and both paths, or the test
	// proves nothing.
	if invalid == 0 || invalid == total || fast == 0 {
		t.Fatalf("%d mutants: %d invalid, %d on the fast path", total, invalid, fast)
	}
	t.Logf("%d mutants: %d invalid, %d valid on the fast path", total, invalid, fast)
}

// TestDecodePoison lists messages a publisher could write to the stream
// without ingest. Each must be invalid, so the worker dead-letters it.
func TestDecodePoison(t *testing.T) {
	valid := sc()
	tests := []struct {
		name string
		data string
	}{
		{"unknown field", strings.TrimSuffix(valid, "}") + `,"extra":1}`},
		{"repeated field", strings.TrimSuffix(valid, "}") + `,"id":"evt-2"}`},
		{"structure for skipcall", strings.TrimSuffix(valid, "}") + `,"structure":"FLAT"}`},
		{"empty structure", strings.TrimSuffix(ro(), "}") + `,"structure":""}`},
		{"unknown target", sc("target", `"hubspot"`)},
		{"nil uuid", sc("contact_id", `"00000000-0000-0000-0000-000000000000"`)},
		{"zero revyops id", ro("contact_id", `"0"`)},
		{"zero time", sc("occurred_at", `"0001-01-01T00:00:00Z"`)},
		{"not a time", sc("occurred_at", `"yesterday"`)},
		{"patch unknown field", scPatch(`{"first_name":"A"}`)},
		{"patch too long", scPatch(`{"firstName":"` + strings.Repeat("x", 101) + `"}`)},
		{"patch empty", scPatch(`{}`)},
		{"patch not an object", scPatch(`[1]`)},
		{"patch lone surrogate", scPatch(`{"firstName":"\ud800"}`)},
		{"patch invalid UTF-8", scPatch("{\"firstName\":\"\xc3\"}")},
		{"patch control character", scPatch("{\"firstName\":\"a\x01\"}")},
		{"patch bad number", roPatch(`{"company_id":01}`)},
		{"trailing data", valid + `{}`},
		{"id with space", sc("id", `"a b"`)},
		{"id too long", sc("id", jstr(strings.Repeat("i", 201)))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := events.Decode([]byte(tc.data))
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Decode(%s) error = %v, want ErrInvalid", tc.data, err)
			}
			assertDecodeAgrees(t, []byte(tc.data))
		})
	}
}

// TestDecodeTruncatedStoredForm checks every prefix of stored events, as a
// message cut short by a publisher writing around ingest: each is invalid,
// and Decode answers as the full decoder does instead of reading past the
// end (a cut in a string of the envelope, or just after "patch":).
func TestDecodeTruncatedStoredForm(t *testing.T) {
	for _, data := range storedForms(t) {
		for i := range data {
			m := data[:i:i]
			if _, err := events.Decode(m); !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Decode(%s) error = %v, want ErrInvalid", m, err)
			}
			assertDecodeAgrees(t, m)
		}
	}
}

func FuzzDecodeStored(f *testing.F) {
	for _, data := range storedForms(f) {
		f.Add(data)
	}
	f.Add([]byte(sc()))
	f.Add([]byte(`{"id":"a","target":"revyops","contact_id":"1","occurred_at":"2024-05-01T12:00:00Z","patch":{"first_name":"a"},"structure":"FLAT"} `))
	f.Fuzz(func(t *testing.T, data []byte) {
		assertDecodeAgrees(t, data)
	})
}

// TestMarshalMatchesEncodingJSON checks the hand-written encoder against
// encoding/json on events a decoder did not produce, including ones it
// must refuse.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []events.Event{
		{ID: "e1", Target: events.TargetRevyOps, ContactID: "7", OccurredAt: at, Patch: json.RawMessage(`{ "first_name" : "<A&B>\u2028" }`), Structure: "FLAT"},
		{ID: "e\"1\\<&>\u2028\x01\n\xff", Target: "x\ty", ContactID: "é", OccurredAt: at.In(time.FixedZone("", 5*3600+1800)), Patch: json.RawMessage(`{"a":[1,2.5e3,true,null]}`)},
		// Long strings beside a short patch: Marshal's buffer is sized from
		// their lengths, and an event it does not validate may hold any.
		{ID: strings.Repeat("i", 200), Target: events.TargetRevyOps, ContactID: "7", OccurredAt: at, Patch: json.RawMessage(`{}`)},
		{ID: "e1", Target: events.Target(strings.Repeat("t", 500)), OccurredAt: at, Patch: json.RawMessage(`{}`)},
		{ID: "e1", ContactID: strings.Repeat("7", 500), OccurredAt: at, Patch: json.RawMessage(`{}`)},
		{ID: "e1", OccurredAt: at, Patch: json.RawMessage(`{}`), Structure: strings.Repeat("S", 500)},
		{ID: "e1", OccurredAt: at.Add(123456789), Patch: nil},
		{ID: "e1", OccurredAt: at, Patch: json.RawMessage(``)},
		{ID: "e1", OccurredAt: at, Patch: json.RawMessage(`{`)},
		{ID: "e1", OccurredAt: at, Patch: json.RawMessage(`{"a":"` + "\xff" + `"}`)},
		{ID: "e1", OccurredAt: at, Patch: json.RawMessage(` 1 `)},
		{ID: "e1", OccurredAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Patch: json.RawMessage(`{}`)},
		{ID: "e1", OccurredAt: at.In(time.FixedZone("", 24*3600)), Patch: json.RawMessage(`{}`)},
	}
	for _, e := range tests {
		assertMarshalMatches(t, &e)
	}
}

// TestMarshalRechecksReplacedPatch checks that a decoded event whose Patch
// is replaced is encoded from the new patch, checked again.
func TestMarshalRechecksReplacedPatch(t *testing.T) {
	evs, _, err := events.DecodeRequest([]byte(sc()), "", events.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0]
	e.Patch = json.RawMessage(`{"firstName":"Ada"`) // same length as the decoded patch, minus one
	if _, err := e.Marshal(); err == nil {
		t.Fatal("Marshal accepted an invalid replacement patch")
	}
	// A reslice of the decoded patch starts at the same byte but is not the
	// patch the decoder checked.
	e.Patch = evs[0].Patch[:len(evs[0].Patch)-1]
	if _, err := e.Marshal(); err == nil {
		t.Fatalf("Marshal accepted the decoded patch cut short: %s", e.Patch)
	}
	e.Patch = json.RawMessage(`{ "lastName": "B" }`)
	got, err := e.Marshal()
	if err != nil || !strings.Contains(string(got), `"patch":{"lastName":"B"}`) {
		t.Fatalf("Marshal = %s, %v", got, err)
	}
}

// assertMarshalMatches fails t unless Marshal and encoding/json agree on e:
// the same bytes, or both an error.
func assertMarshalMatches(t testing.TB, e *events.Event) {
	t.Helper()
	want, wantErr := referenceMarshal(e)
	got, err := e.Marshal()
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("Marshal(%+v) error = %v, encoding/json's = %v", e, err, wantErr)
	case err == nil && !bytes.Equal(got, want):
		t.Fatalf("Marshal(%+v) =\n%s\nencoding/json:\n%s", e, got, want)
	}
}

func FuzzMarshal(f *testing.F) {
	f.Add("e1", "skipcall", uuidLower, int64(1714564800), int64(0), 0, []byte(`{"firstName":"Ada"}`), "")
	f.Add("e\"<&>\u2028", "revyops", "42", int64(-62135596800), int64(999), -3600, []byte(` { "a" : [ 1 , "\u00e9" ] } `), "FLAT")
	f.Add("\xff\x00", "", "", int64(253402300800), int64(0), 86400, []byte(`{`), "x")
	f.Fuzz(func(t *testing.T, id, target, contact string, sec, nsec int64, offset int, patch []byte, structure string) {
		e := events.Event{ID: id, Target: events.Target(target), ContactID: contact,
			OccurredAt: time.Unix(sec, nsec).In(time.FixedZone("", offset%(48*3600))), Patch: patch, Structure: structure}
		assertMarshalMatches(t, &e)
	})
}

// FuzzCheckJSON holds the one-pass check to json.Valid, utf8.Valid and the
// surrogate check together: it never accepts what they refuse, accepts what
// they accept unless it nests deeper than it follows, and says correctly
// whether the text is compact.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range storedSeeds() {
		f.Add([]byte(s))
	}
	for _, s := range []string{`1`, `-0.5e+3`, `01`, `1.`, `"\ud800"`, `"\ud83d\ude00"`, `"\u00"`, "\"\xed\xa0\x80\"", `[ ]`, `{"a" :1 }`, `tru`, `nul`, `[1,]`, `{"a":1,}`} {
		f.Add([]byte(s))
	}
	// Every prefix of a text with each kind of value, escape and space: all
	// but the whole are cut short, and must be refused without a panic.
	all := "{\"a\":[1,-0.5e+3,0,2E-7,true,false,null,\"\\u00e9\\uD83D\\uDE00\\udbff\\udfff\\n\\\"\\\\\\/\\b\\f\\r\\t\xc3\xa9\",{},[]]," +
		"\"b\":{ \"c\" : [ { } , [ ] ] },\"d\":{\"e\":[[1],{\"f\":1}]}}"
	for i := 0; i <= len(all); i++ {
		f.Add([]byte(all[:i]))
	}
	// Texts that are cut short or wrong in their first bytes, where a check
	// that gave up with index 1 instead of -1 would read on from the start
	// (and accept "t" and spaces) or loop for ever on the same escape; and
	// digits, literals and surrogate halves at the ends of their ranges.
	for _, s := range []string{" ", "[", "[ ", `"`, "\"\t", "t   ", "-", "- ", `"\`, `"\x"`, `"\ud800\u0041"`, `"\udc00"`,
		`"\uD800\uDC00"`, "true", "false", "null", "10.0e10", "19.9e9"} {
		f.Add([]byte(s))
	}
	// Nesting: 64 levels are followed, deeper texts are left to
	// encoding/json, which refuses more than 10000; and closing a container
	// gives its level back, however many there are.
	f.Add([]byte(strings.Repeat(`{"a":`, 63) + "{}" + strings.Repeat("}", 63)))
	f.Add([]byte(strings.Repeat(`[`, 64) + strings.Repeat("]", 64)))
	f.Add([]byte(strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001)))
	f.Add([]byte(strings.Repeat(`[`, 10001) + "1" + strings.Repeat("]", 10001)))
	for _, item := range []string{`{}`, `[]`, `{"a":1}`, `[1]`} {
		f.Add([]byte("[" + strings.Repeat(item+",", 70) + item + "]"))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ok, spaced := events.CheckJSONFast(b)
		ref := json.Valid(b) && utf8.Valid(b) && events.UnpairedSurrogate(b) < 0
		if ok && !ref {
			t.Fatalf("CheckJSONFast accepts %q: json.Valid %v, utf8.Valid %v, unpaired surrogate at %d",
				b, json.Valid(b), utf8.Valid(b), events.UnpairedSurrogate(b))
		}
		if !ok && ref && depth(b) <= 64 {
			t.Fatalf("CheckJSONFast refuses %q, which is valid", b)
		}
		if ok {
			var c bytes.Buffer
			if err := json.Compact(&c, b); err != nil {
				t.Fatal(err)
			}
			if compact := bytes.Equal(c.Bytes(), b); compact == spaced {
				t.Fatalf("CheckJSONFast(%q) spaced = %v, but compact form is %q", b, spaced, c.Bytes())
			}
		}
	})
}

// depth returns the deepest nesting of brackets in b outside strings, for
// valid JSON b.
func depth(b []byte) int {
	d, most, in := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case in:
		case c == '{' || c == '[':
			d++
			most = max(most, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return most
}
