package events_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/events"
)

const (
	uuidLower = "550e8400-e29b-41d4-a716-446655440000"
	uuidUpper = "550E8400-E29B-41D4-A716-446655440000"
	when      = `"2024-05-01T12:00:00Z"`
)

// obj builds a JSON object from key, raw-value pairs, in order.
func obj(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + kv[i] + `":` + kv[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// with returns base (key, raw-value pairs) with over applied: a key already
// in base gets the new value ("-" deletes it), a new key is appended.
func with(base []string, over ...string) string {
	kv := append([]string(nil), base...)
	for i := 0; i+1 < len(over); i += 2 {
		found := false
		for j := 0; j+1 < len(kv); j += 2 {
			if kv[j] == over[i] {
				kv[j+1] = over[i+1]
				found = true
			}
		}
		if !found {
			kv = append(kv, over[i], over[i+1])
		}
	}
	out := kv[:0:0]
	for j := 0; j+1 < len(kv); j += 2 {
		if kv[j+1] != "-" {
			out = append(out, kv[j], kv[j+1])
		}
	}
	return obj(out...)
}

// skipcallBase is a valid Skipcall event.
var skipcallBase = []string{
	"id", `"evt-sc-1"`,
	"target", `"skipcall"`,
	"contact_id", `"` + uuidLower + `"`,
	"occurred_at", when,
	"patch", `{"firstName":"Ada"}`,
}

// revyopsBase is a valid RevyOps event.
var revyopsBase = []string{
	"id", `"evt-ro-1"`,
	"target", `"revyops"`,
	"contact_id", `42`,
	"occurred_at", when,
	"patch", `{"first_name":"Ada"}`,
}

// sc returns a Skipcall event with overrides.
func sc(over ...string) string { return with(skipcallBase, over...) }

// ro returns a RevyOps event with overrides.
func ro(over ...string) string { return with(revyopsBase, over...) }

// scPatch returns a Skipcall event with the given patch.
func scPatch(patch string) string { return sc("patch", patch) }

// roPatch returns a RevyOps event with the given patch.
func roPatch(patch string) string { return ro("patch", patch) }

// jstr quotes s as a JSON string (s must not need escaping).
func jstr(s string) string { return `"` + s + `"` }

// fields lists the Field of each problem.
func fields(errs []events.FieldError) []string {
	out := make([]string, len(errs))
	for i, f := range errs {
		out[i] = f.Field
	}
	return out
}

// assertEqualEvents fails t unless a and b hold the same event.
func assertEqualEvents(t testing.TB, a, b events.Event) {
	t.Helper()
	if a.ID != b.ID || a.Target != b.Target || a.ContactID != b.ContactID || a.Structure != b.Structure ||
		!a.OccurredAt.Equal(b.OccurredAt) || !bytes.Equal(a.Patch, b.Patch) {
		t.Fatalf("events differ:\n%+v\n%+v\npatches %s / %s", a, b, a.Patch, b.Patch)
	}
}
