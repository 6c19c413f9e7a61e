package lww_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/lww"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// at returns a clock s seconds after t0 with id.
func at(s int, id string) lww.Clock {
	return lww.Clock{At: t0.Add(time.Duration(s) * time.Second), ID: id}
}

func TestClockAfter(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		c, o lww.Clock
		want bool
	}{
		{"later time", at(2, "a"), at(1, "z"), true},
		{"earlier time", at(1, "z"), at(2, "a"), false},
		{"same time, greater id", at(1, "b"), at(1, "a"), true},
		{"same time, smaller id", at(1, "a"), at(1, "b"), false},
		{"itself", at(1, "a"), at(1, "a"), false},
		{"same instant in another zone", lww.Clock{At: t0.In(paris), ID: "b"}, lww.Clock{At: t0, ID: "a"}, true},
		{"anything after zero", at(0, ""), lww.Clock{}, true},
		{"zero after nothing", lww.Clock{}, lww.Clock{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.After(tc.o); got != tc.want {
				t.Fatalf("%v.After(%v) = %v, want %v", tc.c, tc.o, got, tc.want)
			}
		})
	}
	if !(lww.Clock{At: t0.In(paris), ID: "a"}).Equal(lww.Clock{At: t0, ID: "a"}) {
		t.Fatal("Equal: the same instant in two zones differs")
	}
	ev := events.Event{ID: "e1", OccurredAt: t0}
	if c := lww.ClockOf(&ev); !c.Equal(at(0, "e1")) {
		t.Fatalf("ClockOf = %v", c)
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		name   string
		target events.Target
		patch  string
		want   []string
		err    bool
	}{
		{"skipcall top-level", events.TargetSkipcall, `{"firstName":"A","city":"Paris"}`, []string{"firstName", "city"}, false},
		{"skipcall phoneNumbers whole", events.TargetSkipcall, `{"phoneNumbers":["+33612345678","+33698765432"]}`, []string{"phoneNumbers"}, false},
		{"skipcall customFields per key", events.TargetSkipcall, `{"customFields":{"industry":"Tech","a/b":"x"},"role":"CTO"}`,
			[]string{"customFields/industry", "customFields/a/b", "role"}, false},
		{"skipcall empty customFields", events.TargetSkipcall, `{"customFields":{}}`, nil, false},
		{"skipcall customFields not an object", events.TargetSkipcall, `{"customFields":["x"]}`, nil, true},
		{"revyops top-level", events.TargetRevyOps, `{"first_name":"G","company_id":"acme.com"}`, []string{"first_name", "company_id"}, false},
		{"revyops custom fields per name", events.TargetRevyOps,
			`{"contact_custom_fields":[{"field_name":"tier","field_value":"gold"},{"field_name":"size","field_value":null}]}`,
			[]string{"contact_custom_fields/tier", "contact_custom_fields/size"}, false},
		{"revyops repeated field_name listed twice", events.TargetRevyOps,
			`{"contact_custom_fields":[{"field_name":"tier","field_value":"a"},{"field_name":"tier","field_value":"b"}]}`,
			[]string{"contact_custom_fields/tier", "contact_custom_fields/tier"}, false},
		{"revyops item without field_name", events.TargetRevyOps, `{"contact_custom_fields":[{"field_value":"x"}]}`, nil, true},
		{"revyops field_name not a string", events.TargetRevyOps, `{"contact_custom_fields":[{"field_name":1}]}`, nil, true},
		{"revyops custom fields not an array", events.TargetRevyOps, `{"contact_custom_fields":{"tier":"x"}}`, nil, true},
		{"skipcall keys are not per key at revyops", events.TargetRevyOps, `{"customFields":{"a":"b"}}`, []string{"customFields"}, false},
		{"not an object", events.TargetSkipcall, `["city"]`, nil, true},
		{"trailing data", events.TargetSkipcall, `{"city":"A"} {}`, nil, true},
		{"unknown target", events.Target("hubspot"), `{"city":"A"}`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lww.Fields(tc.target, json.RawMessage(tc.patch))
			if tc.err {
				if !errors.Is(err, lww.ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Fatalf("Fields = %q, want %q", got, tc.want)
			}
		})
	}
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// clocksEqual compares clock maps with Clock.Equal.
func clocksEqual(a, b map[string]lww.Clock) bool {
	if len(a) != len(b) {
		return false
	}
	for k, c := range a {
		if o, ok := b[k]; !ok || !c.Equal(o) {
			return false
		}
	}
	return true
}

func ch(patch string, c lww.Clock) lww.Change {
	return lww.Change{Patch: json.RawMessage(patch), Clock: c}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name    string
		target  events.Target
		changes []lww.Change
		want    string
		clocks  map[string]lww.Clock
	}{
		{"newest wins, not last", events.TargetSkipcall,
			[]lww.Change{ch(`{"city":"Paris"}`, at(10, "a")), ch(`{"city":"Lyon","firstName":"Ada"}`, at(9, "b"))},
			`{"city":"Paris","firstName":"Ada"}`,
			map[string]lww.Clock{"city": at(10, "a"), "firstName": at(9, "b")}},
		{"later and newer wins", events.TargetSkipcall,
			[]lww.Change{ch(`{"city":"Lyon"}`, at(9, "b")), ch(`{"city":"Paris"}`, at(10, "a"))},
			`{"city":"Paris"}`, map[string]lww.Clock{"city": at(10, "a")}},
		{"tie broken by id", events.TargetSkipcall,
			[]lww.Change{ch(`{"city":"B"}`, at(5, "b")), ch(`{"city":"A"}`, at(5, "a")), ch(`{"city":"C"}`, at(5, "c"))},
			`{"city":"C"}`, map[string]lww.Clock{"city": at(5, "c")}},
		{"duplicate keeps one", events.TargetSkipcall,
			[]lww.Change{ch(`{"city":"A"}`, at(5, "a")), ch(`{"city":"A"}`, at(5, "a"))},
			`{"city":"A"}`, map[string]lww.Clock{"city": at(5, "a")}},
		{"phoneNumbers replaced whole by the newest", events.TargetSkipcall,
			[]lww.Change{ch(`{"phoneNumbers":["+33600000002","+33600000003"]}`, at(2, "b")), ch(`{"phoneNumbers":["+33600000001"]}`, at(1, "a"))},
			`{"phoneNumbers":["+33600000002","+33600000003"]}`, map[string]lww.Clock{"phoneNumbers": at(2, "b")}},
		{"customFields per key", events.TargetSkipcall,
			[]lww.Change{
				ch(`{"customFields":{"industry":"Tech","size":"10"}}`, at(3, "c")),
				ch(`{"customFields":{"industry":"Old","tier":"gold"},"role":"CTO"}`, at(1, "a")),
				ch(`{"customFields":{"size":"50"}}`, at(4, "d")),
			},
			`{"customFields":{"industry":"Tech","size":"50","tier":"gold"},"role":"CTO"}`,
			map[string]lww.Clock{"customFields/industry": at(3, "c"), "customFields/size": at(4, "d"), "customFields/tier": at(1, "a"), "role": at(1, "a")}},
		{"revyops contact_custom_fields per field_name", events.TargetRevyOps,
			[]lww.Change{
				ch(`{"first_name":"New","contact_custom_fields":[{"field_name":"tier","field_value":"gold"}]}`, at(5, "e")),
				ch(`{"first_name":"Old","contact_custom_fields":[{"field_name":"tier","field_value":"bronze"},{"field_name":"size","field_value":null}]}`, at(2, "b")),
			},
			`{"first_name":"New","contact_custom_fields":[{"field_name":"tier","field_value":"gold"},{"field_name":"size","field_value":null}]}`,
			map[string]lww.Clock{"first_name": at(5, "e"), "contact_custom_fields/tier": at(5, "e"), "contact_custom_fields/size": at(2, "b")}},
		{"revyops repeated field_name in one change: last item", events.TargetRevyOps,
			[]lww.Change{
				ch(`{"contact_custom_fields":[{"field_name":"tier","field_value":"a"},{"field_name":"tier","field_value":"b"}]}`, at(5, "e")),
				ch(`{"contact_custom_fields":[{"field_name":"tier","field_value":"old"}]}`, at(1, "a")),
			},
			`{"contact_custom_fields":[{"field_name":"tier","field_value":"b"}]}`,
			map[string]lww.Clock{"contact_custom_fields/tier": at(5, "e")}},
		{"revyops company_id is one field", events.TargetRevyOps,
			[]lww.Change{ch(`{"company_id":"acme.com"}`, at(1, "a")), ch(`{"company_id":null}`, at(2, "b"))},
			`{"company_id":null}`, map[string]lww.Clock{"company_id": at(2, "b")}},
		{"strings are not escaped", events.TargetSkipcall,
			[]lww.Change{ch(`{"company":"A<B>&C"}`, at(1, "a")), ch(`{"customFields":{"<k>":"x"}}`, at(2, "b"))},
			`{"company":"A<B>&C","customFields":{"<k>":"x"}}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, clocks, err := lww.Merge(tc.target, tc.changes...)
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, got, []byte(tc.want)) {
				t.Fatalf("Merge = %s, want %s", got, tc.want)
			}
			if bytes.Contains(got, []byte(`\u003c`)) {
				t.Fatalf("Merge escaped HTML: %s", got)
			}
			if tc.clocks != nil && !clocksEqual(clocks, tc.clocks) {
				t.Fatalf("clocks = %v, want %v", clocks, tc.clocks)
			}
			// Order does not matter: reversed changes merge to the same patch.
			rev := make([]lww.Change, len(tc.changes))
			for i, c := range tc.changes {
				rev[len(rev)-1-i] = c
			}
			again, clocks2, err := lww.Merge(tc.target, rev...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name != "revyops repeated field_name in one change: last item" && !jsonEqual(t, again, got) && !sameCustomFieldSet(t, again, got) {
				t.Fatalf("reversed order merged to %s, not %s", again, got)
			}
			if !clocksEqual(clocks, clocks2) {
				t.Fatalf("reversed order clocks %v, not %v", clocks2, clocks)
			}
		})
	}
}

// sameCustomFieldSet reports whether two RevyOps patches differ at most in
// the order of their contact_custom_fields items.
func sameCustomFieldSet(t *testing.T, a, b []byte) bool {
	t.Helper()
	norm := func(p []byte) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatal(err)
		}
		if items, ok := m["contact_custom_fields"].([]any); ok {
			set := map[string]any{}
			for _, it := range items {
				set[it.(map[string]any)["field_name"].(string)] = it
			}
			m["contact_custom_fields"] = set
		}
		return m
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestMergeSingleChangeUnchanged(t *testing.T) {
	p := json.RawMessage(`{ "city" : "Paris", "customFields": {"a":"1","b":"2"} }`)
	got, clocks, err := lww.Merge(events.TargetSkipcall, lww.Change{Patch: p, Clock: at(1, "e")})
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &p[0] || len(got) != len(p) {
		t.Fatalf("single change: got %s, not the same bytes", got)
	}
	want := map[string]lww.Clock{"city": at(1, "e"), "customFields/a": at(1, "e"), "customFields/b": at(1, "e")}
	if !clocksEqual(clocks, want) {
		t.Fatalf("clocks = %v, want %v", clocks, want)
	}
}

func TestMergeErrors(t *testing.T) {
	for name, changes := range map[string][]lww.Change{
		"none":           nil,
		"single invalid": {ch(`[1]`, at(1, "a"))},
		"second invalid": {ch(`{"city":"A"}`, at(1, "a")), ch(`{"customFields":"x"}`, at(2, "b"))},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := lww.Merge(events.TargetSkipcall, changes...); !errors.Is(err, lww.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	stored := lww.State{Revision: 7, Fields: map[string]lww.Clock{
		"city":                       at(10, "s"),
		"phoneNumbers":               at(10, "s"),
		"customFields/industry":      at(10, "s"),
		"contact_custom_fields/tier": at(10, "s"),
		"first_name":                 at(10, "s"),
	}}
	all := func(c lww.Clock, names ...string) map[string]lww.Clock {
		m := map[string]lww.Clock{}
		for _, n := range names {
			m[n] = c
		}
		return m
	}
	tests := []struct {
		name    string
		target  events.Target
		patch   string
		clocks  map[string]lww.Clock
		want    string // "" : nothing kept
		dropped []string
	}{
		{"newer than stored: kept", events.TargetSkipcall, `{"city":"Paris"}`, all(at(11, "a"), "city"), `{"city":"Paris"}`, nil},
		{"older: dropped", events.TargetSkipcall, `{"city":"Lyon"}`, all(at(9, "a"), "city"), "", []string{"city"}},
		{"equal clock (same event redelivered): dropped", events.TargetSkipcall, `{"city":"Paris"}`, all(at(10, "s"), "city"), "", []string{"city"}},
		{"same time, greater id: kept", events.TargetSkipcall, `{"city":"X"}`, all(at(10, "t"), "city"), `{"city":"X"}`, nil},
		{"same time, smaller id: dropped", events.TargetSkipcall, `{"city":"X"}`, all(at(10, "r"), "city"), "", []string{"city"}},
		{"unknown field kept", events.TargetSkipcall, `{"city":"Lyon","role":"CTO"}`, all(at(9, "a"), "city", "role"), `{"role":"CTO"}`, []string{"city"}},
		{"phoneNumbers dropped whole", events.TargetSkipcall, `{"phoneNumbers":["+33600000001"],"lastName":"L"}`,
			all(at(9, "a"), "phoneNumbers", "lastName"), `{"lastName":"L"}`, []string{"phoneNumbers"}},
		{"customFields per key", events.TargetSkipcall, `{"customFields":{"industry":"Old","tier":"gold"}}`,
			all(at(9, "a"), "customFields/industry", "customFields/tier"), `{"customFields":{"tier":"gold"}}`, []string{"customFields/industry"}},
		{"customFields all dropped: key removed", events.TargetSkipcall, `{"customFields":{"industry":"Old"},"role":"R"}`,
			map[string]lww.Clock{"customFields/industry": at(9, "a"), "role": at(11, "b")}, `{"role":"R"}`, []string{"customFields/industry"}},
		{"revyops custom fields per field_name", events.TargetRevyOps,
			`{"first_name":"Old","contact_custom_fields":[{"field_name":"tier","field_value":"x"},{"field_name":"size","field_value":"1"},{"field_name":"tier","field_value":"y"}]}`,
			all(at(9, "a"), "first_name", "contact_custom_fields/tier", "contact_custom_fields/size"),
			`{"contact_custom_fields":[{"field_name":"size","field_value":"1"}]}`, []string{"contact_custom_fields/tier", "first_name"}},
		{"revyops everything dropped", events.TargetRevyOps, `{"first_name":"Old"}`, all(at(1, "a"), "first_name"), "", []string{"first_name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kept, keptClocks, dropped, err := lww.Filter(tc.target, json.RawMessage(tc.patch), tc.clocks, stored)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dropped, tc.dropped) {
				t.Fatalf("dropped = %q, want %q", dropped, tc.dropped)
			}
			if tc.want == "" {
				if kept != nil || keptClocks != nil {
					t.Fatalf("kept %s %v, want nothing", kept, keptClocks)
				}
				return
			}
			if !jsonEqual(t, kept, []byte(tc.want)) {
				t.Fatalf("kept = %s, want %s", kept, tc.want)
			}
			names, err := lww.Fields(tc.target, kept)
			if err != nil {
				t.Fatal(err)
			}
			if len(keptClocks) != len(uniq(names)) {
				t.Fatalf("keptClocks %v for fields %q", keptClocks, names)
			}
			for _, n := range names {
				if c, ok := keptClocks[n]; !ok || !c.Equal(tc.clocks[n]) {
					t.Fatalf("keptClocks[%s] = %v, want %v", n, c, tc.clocks[n])
				}
			}
		})
	}
}

func uniq(names []string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

func TestFilterNothingDroppedReturnsSameBytes(t *testing.T) {
	p := json.RawMessage(`{"city" : "Paris","customFields":{"tier":"gold"}}`)
	clocks := map[string]lww.Clock{"city": at(11, "a"), "customFields/tier": at(11, "a")}
	kept, keptClocks, dropped, err := lww.Filter(events.TargetSkipcall, p, clocks, lww.State{Fields: map[string]lww.Clock{"city": at(10, "z")}})
	if err != nil {
		t.Fatal(err)
	}
	if &kept[0] != &p[0] || len(kept) != len(p) || dropped != nil {
		t.Fatalf("kept %s dropped %q: not the patch itself", kept, dropped)
	}
	if !clocksEqual(keptClocks, clocks) {
		t.Fatalf("keptClocks = %v", keptClocks)
	}
	// An empty state keeps everything too.
	if kept, _, _, _ := lww.Filter(events.TargetSkipcall, p, clocks, lww.State{}); &kept[0] != &p[0] {
		t.Fatal("empty state: not the patch itself")
	}
}

func TestFilterErrors(t *testing.T) {
	st := lww.State{}
	if _, _, _, err := lww.Filter(events.TargetSkipcall, json.RawMessage(`{"city":"A","role":"R"}`), map[string]lww.Clock{"city": at(1, "a")}, st); !errors.Is(err, lww.ErrInvalid) {
		t.Fatalf("field without a clock: err = %v", err)
	}
	if _, _, _, err := lww.Filter(events.TargetRevyOps, json.RawMessage(`"x"`), nil, st); !errors.Is(err, lww.ErrInvalid) {
		t.Fatalf("not an object: err = %v", err)
	}
}

func TestFieldsRepeatedKeyInvalid(t *testing.T) {
	for _, p := range []string{`{"city":"A","city":"B"}`, `{"customFields":{"a":"1","a":"2"}}`, `{"customFields":{},"customFields":{"a":"1"}}`} {
		if _, err := lww.Fields(events.TargetSkipcall, json.RawMessage(p)); !errors.Is(err, lww.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", p, err)
		}
	}
}
