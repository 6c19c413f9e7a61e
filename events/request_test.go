package events_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/events"
)

// requestPathSeeds are bodies for the one-pass and full paths of
// DecodeRequest: valid, invalid and malformed, compact and spaced, single
// and batched.
func requestPathSeeds() []string {
	spaced := "[ " + sc() + " ,\n\t" + ro("structure", `"FLAT"`) + " ]"
	return []string{
		sc(), ro(), ro("structure", `"FLAT"`, "contact_id", `"007"`),
		sc("contact_id", jstr(uuidUpper)), sc("target", `"skip\u0063all"`), sc("target", `"other"`),
		scPatch(`{"firstName":"Zoë \u00e9 \ud83d\ude00","phoneNumbers":["+33612345678"],"customFields":{"a":"b"}}`),
		scPatch(`{ "firstName" : "Ada" , "customFields" : { "a" : "b" } }`),
		roPatch(`{"company_id":"acme.com","contact_custom_fields":[{"field_name":"a","field_value":null}]}`),
		"[" + sc() + "," + ro() + "]", spaced, " " + spaced + " ",
		"[" + sc() + "," + sc() + "]", "[" + sc("id", `1`) + "," + sc("id", `1`) + "]",
		"[" + sc("id", `"a\"b"`) + "," + sc("id", `"a\"b"`) + "]",
		"[" + sc("patch", `[]`) + "," + sc("occurred_at", `"yesterday"`) + "]",
		`{"id":"a","id":"b"}`, `{"ID":"a","\u0069d":"b"}`, `{}`, `[{}]`,
		`[]`, `[ ]`, `null`, `"x"`, `{"id":`, `[{"id":"a"},1]`, `[{"id":"a"}]]`, `[{"id":"a"}`, `[{"id":"a"},]`,
		`{"id":"a"} {}`, "{\"id\":\"a\xff\"}", scPatch(`{"firstName":"\ud800"}`), sc("id", "-"),
		strings.Repeat("[", 70) + strings.Repeat("]", 70),
		`{"patch":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}`,
		benchEvent(1), "[" + benchEvent(1) + "," + benchEvent(2) + "," + benchEvent(3) + "]",
	}
}

// TestDecodeRequestPaths holds the one-pass path to the full one on the
// seeds, and checks that it answers the bodies it is for.
func TestDecodeRequestPaths(t *testing.T) {
	for _, s := range requestPathSeeds() {
		assertPathsAgree(t, []byte(s), "", 3)
		assertPathsAgree(t, []byte(s), "evt-sc-1", 3)
	}
	// Valid and invalid events, compact or not, are the one-pass path's:
	// only malformed or oversized bodies go to the full path.
	for _, s := range []string{sc(), sc("id", `7`), "[" + sc() + "," + ro() + "]", "[ " + sc() + " ,\n" + sc() + " ]",
		"[" + benchEvent(1) + "," + benchEvent(1) + "]"} {
		if _, _, ok, _ := events.DecodeRequestFast([]byte(s), "", 3, false); !ok {
			t.Errorf("the one-pass path leaves %s to the full path", s)
		}
	}
	// DecodeRequest's events are copies: they do not change with the body.
	for _, s := range []string{sc(), "[" + benchEvent(1) + "," + benchEvent(2) + "]"} {
		body := []byte(s)
		evs, _, err := events.DecodeRequest(body, "", events.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := evs[len(evs)-1].Marshal()
		for i := range body {
			body[i] = 'x'
		}
		if got, _ := evs[len(evs)-1].Marshal(); string(got) != string(want) {
			t.Fatalf("the event changed with its body: %s, was %s", got, want)
		}
	}
	for _, s := range []string{"[" + sc() + "," + sc() + "," + sc() + "," + sc() + "]", `[]`, `[{}, 1]`, `{"id":"a"`, `{} {}`} {
		if _, _, ok, _ := events.DecodeRequestFast([]byte(s), "", 3, false); ok {
			t.Errorf("the one-pass path answers %s", s)
		}
	}
}

// FuzzDecodeRequestPaths holds DecodeRequest (the one-pass path where it
// answers) to its full path: the same events, the same error.
func FuzzDecodeRequestPaths(f *testing.F) {
	for _, s := range requestPathSeeds() {
		f.Add([]byte(s), "")
	}
	f.Add([]byte(sc()), "evt-sc-1")
	f.Add([]byte(sc()), "other")
	f.Add([]byte(sc("id", "-")), "hdr-1")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		assertPathsAgree(t, body, header, 3)
	})
}

// assertPathsAgree fails t unless DecodeRequest and its full path answer
// body alike.
func assertPathsAgree(t *testing.T, body []byte, header string, maxBatch int) {
	t.Helper()
	lim := events.Limits{MaxBatch: maxBatch}
	evs, array, err := events.DecodeRequest(body, header, lim)
	wantEvs, wantArray, wantErr := events.DecodeRequestFull(events.TrimSpace(body), header, lim)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("DecodeRequest(%q) error %v, full path %v", body, err, wantErr)
	}
	if err != nil {
		if errors.Is(err, events.ErrMalformed) != errors.Is(wantErr, events.ErrMalformed) {
			t.Fatalf("DecodeRequest(%q): ErrMalformed in %v, not in %v or back", body, err, wantErr)
		}
		var ve, wantVE *events.ValidationError
		if errors.As(err, &ve) != errors.As(wantErr, &wantVE) || ve != nil && !reflect.DeepEqual(ve.Errors, wantVE.Errors) {
			t.Fatalf("DecodeRequest(%q) = %#v, full path %#v", body, err, wantErr)
		}
		if evs != nil {
			t.Fatalf("DecodeRequest(%q): events with an error", body)
		}
		if _, _, inErr := events.DecodeRequestInPlace(body, header, lim); inErr == nil || inErr.Error() != err.Error() {
			t.Fatalf("DecodeRequestInPlace(%q) error %v, DecodeRequest's %v", body, inErr, err)
		}
		return
	}
	if array != wantArray || len(evs) != len(wantEvs) {
		t.Fatalf("DecodeRequest(%q) = %d events (array %v), full path %d (array %v)", body, len(evs), array, len(wantEvs), wantArray)
	}
	for i := range evs {
		assertEqualEvents(t, evs[i], wantEvs[i])
		assertMarshalMatches(t, &evs[i])
	}
	// In place, the same events, until body changes.
	in := append([]byte(nil), body...)
	inEvs, inArray, inErr := events.DecodeRequestInPlace(in, header, lim)
	if inErr != nil || inArray != array || len(inEvs) != len(evs) {
		t.Fatalf("DecodeRequestInPlace(%q) = %d events (array %v), %v; DecodeRequest %d (array %v)", body, len(inEvs), inArray, inErr, len(evs), array)
	}
	for i := range evs {
		assertEqualEvents(t, inEvs[i], evs[i])
		assertMarshalMatches(t, &inEvs[i])
	}
}
