package lww

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
)

// benchPatch16 is a Skipcall event of 16 fields (as lww_test's).
var benchPatch16 = json.RawMessage(`{"firstName":"Ada","lastName":"Lovelace","email":"ada@example.com",` +
	`"company":"Analytical Engines Ltd","city":"London","country":"United Kingdom","url":"https://example.com/ada",` +
	`"linkedinUrl":"https://linkedin.com/in/ada","linkedinSalesUrl":"https://linkedin.com/sales/ada","role":"Chief Mathematician",` +
	`"allowPhoneCalls":true,"phoneNumbers":["+442071234567","+442079876543"],` +
	`"customFields":{"industry":"Computing","team_size":"50-100","tier":"gold","notes":"first programmer"}}`)

// BenchmarkCommitPrepare16 is what Commit computes before its write for a
// 16-field event: the patch's values, the merged state and its encoding,
// for a contact without an entry and for one with its 16 fields stored
// with older clocks and values.
func BenchmarkCommitPrepare16(b *testing.B) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	_, applied, err := Merge(events.TargetSkipcall, Change{Patch: benchPatch16, Clock: Clock{At: at, ID: "0b7e4c6a-evt-00000010", Source: "hubspot"}, Valid: true})
	if err != nil {
		b.Fatal(err)
	}
	_, old, _ := Merge(events.TargetSkipcall, Change{Patch: benchPatch16, Clock: Clock{At: at.Add(-time.Hour), ID: "0b7e4c6a-evt-00000001", Source: "hubspot"}, Valid: true})
	stored, err := decodeState(prepareCommit(b, State{}, benchPatch16, old, at))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for _, bc := range []struct {
		name string
		cur  State
	}{{"new", State{}}, {"stored", stored}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if len(prepareCommit(b, bc.cur, benchPatch16, applied, now)) == 0 {
					b.Fatal("nothing to write")
				}
			}
		})
	}
}
