package lww

import (
	"testing"
	"time"
)

// benchClocks are the clocks Merge gives the bench patch's six fields from
// one event, and a stored state with two of them older.
func benchClocks() (applied, stored map[string]Clock) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	c := Clock{At: at, ID: "0b7e4c6a-evt-00000001"}
	applied = map[string]Clock{"firstName": c, "lastName": c, "city": c, "phoneNumbers": c, "customFields/industry": c, "customFields/tier": c}
	old := Clock{At: at.Add(-time.Hour), ID: "0b7e4c6a-evt-00000000"}
	stored = map[string]Clock{"city": old, "customFields/tier": old}
	return applied, stored
}

// BenchmarkCommitValue is what Commit computes before its write: the
// merged clocks and their encoding, for a contact without an entry (every
// event of the bench's queue) and for one with older clocks stored.
func BenchmarkCommitValue(b *testing.B) {
	applied, stored := benchClocks()
	now := time.Now()
	for _, bc := range []struct {
		name   string
		stored map[string]Clock
	}{{"new", nil}, {"stored", stored}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var (
					buf   [2 * unitsBuf]field
					order [2 * unitsBuf]int32
				)
				fs, _, changed := mergeFields(buf[:0], State{Fields: bc.stored}, applied, nil, now)
				if !changed || len(appendFields(nil, fs, sortFields(order[:0], fs))) == 0 {
					b.Fatal("nothing to write")
				}
			}
		})
	}
}

// BenchmarkDecodeFields reads a stored value of six fields from one event.
func BenchmarkDecodeFields(b *testing.B) {
	applied, _ := benchClocks()
	v := encodeFields(applied)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeFields(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeFieldsLarge encodes the clocks of the process mode's
// event: 15 fields from one event.
func BenchmarkEncodeFieldsLarge(b *testing.B) {
	c := Clock{At: time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC), ID: "r-12345"}
	fields := map[string]Clock{}
	for _, n := range []string{"firstName", "lastName", "email", "company", "city", "country", "role", "url",
		"linkedinUrl", "allowPhoneCalls", "phoneNumbers", "customFields/industry", "customFields/team_size", "customFields/notes"} {
		fields[n] = c
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(encodeFields(fields)) == 0 {
			b.Fatal("empty")
		}
	}
}
