package lww_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"testing"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/lww"
)

// FuzzFields checks the hand-written scanner behind Fields and Filter
// against encoding/json: the same field names for every valid object, and
// ErrInvalid (never a panic) for everything else; a Filter that drops
// nothing round-trips, one that drops everything keeps nothing.
func FuzzFields(f *testing.F) {
	for _, s := range []string{
		`{"firstName":"A","customFields":{"a":"1","b\"q":"2"}}`,
		` { "city" : "x\u00e9" , "phoneNumbers" : [ "+33600000000" ] } `,
		`{"contact_custom_fields":[{"field_name":"t","field_value":null},{"field_value":"v","field_name":"u"}]}`,
		`{"a":{"b":[1,{"c":"]}"}]},"d":true,"e":-1.5e3}`,
		`{}`, `[]`, `{"a":}`, `{"customFields":[]}`, `"x"`, `{"a":1}x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, target := range []events.Target{events.TargetSkipcall, events.TargetRevyOps} {
			names, err := lww.Fields(target, json.RawMessage(s))
			want, ok := referenceFields(target, []byte(s))
			if !ok {
				if err == nil {
					t.Fatalf("%s %q: Fields = %q, want an error", target, s, names)
				}
				if !errors.Is(err, lww.ErrInvalid) {
					t.Fatalf("%s %q: err = %v, not ErrInvalid", target, s, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s %q: %v, want %q", target, s, err, want)
			}
			// A repeated field_name is listed once per item; compare sets.
			if got := uniqueSorted(names); len(got)+len(want) > 0 && !equalStrings(got, want) {
				t.Fatalf("%s %q: Fields = %q, want %q", target, s, names, want)
			}
			clocks := map[string]lww.Clock{}
			for _, n := range names {
				clocks[n] = at(5, "e")
			}
			kept, _, dropped, err := lww.Filter(target, json.RawMessage(s), clocks, lww.State{})
			if err != nil || dropped != nil || string(kept) != s {
				t.Fatalf("%s %q: Filter against nothing: %s %q %v", target, s, kept, dropped, err)
			}
			all := lww.State{Fields: map[string]lww.Clock{}}
			for _, n := range names {
				all.Fields[n] = at(6, "e")
			}
			if kept, _, _, err := lww.Filter(target, json.RawMessage(s), clocks, all); err != nil || (kept != nil && len(names) > 0) {
				t.Fatalf("%s %q: Filter against newer: %s %v", target, s, kept, err)
			}
		}
	})
}

// referenceFields computes the set of Fields' names with encoding/json,
// sorted; ok is false where Fields must fail.
func referenceFields(target events.Target, b []byte) ([]string, bool) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil || hasRepeatedKey(b) {
		return nil, false
	}
	var names []string
	for k, v := range top {
		switch {
		case target == events.TargetSkipcall && k == "customFields":
			var m map[string]json.RawMessage
			if err := json.Unmarshal(v, &m); err != nil || m == nil || hasRepeatedKey(v) {
				return nil, false
			}
			for ck := range m {
				names = append(names, lww.SkipcallCustomFieldPrefix+ck)
			}
		case target == events.TargetRevyOps && k == "contact_custom_fields":
			var items []map[string]json.RawMessage
			if err := json.Unmarshal(v, &items); err != nil || items == nil {
				return nil, false
			}
			for _, it := range items {
				var name string
				if it == nil || json.Unmarshal(it["field_name"], &name) != nil || len(it["field_name"]) == 0 || it["field_name"][0] != '"' {
					return nil, false
				}
				names = append(names, lww.RevyOpsCustomFieldPrefix+name)
			}
		default:
			names = append(names, k)
		}
	}
	return uniqueSorted(names), true
}

// hasRepeatedKey reports whether the JSON object obj has a member key twice
// (at its own level).
func hasRepeatedKey(obj []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		k, _ := t.(string)
		if seen[k] {
			return true
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

func uniqueSorted(names []string) []string {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
