package lww_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
)

// benchPatch16 is a Skipcall event of 16 fields: every top-level key of
// the schema and four custom fields, the shape the worker's CPU profile
// was taken with.
var benchPatch16 = json.RawMessage(`{"firstName":"Ada","lastName":"Lovelace","email":"ada@example.com",` +
	`"company":"Analytical Engines Ltd","city":"London","country":"United Kingdom","url":"https://example.com/ada",` +
	`"linkedinUrl":"https://linkedin.com/in/ada","linkedinSalesUrl":"https://linkedin.com/sales/ada","role":"Chief Mathematician",` +
	`"allowPhoneCalls":true,"phoneNumbers":["+442071234567","+442079876543"],` +
	`"customFields":{"industry":"Computing","team_size":"50-100","tier":"gold","notes":"first programmer"}}`)

// BenchmarkStoreCommit16 is Commit of a 16-field event as the worker
// calls it (its first write through a stream.Publisher, the patch and
// clocks as Merge returns them): for a contact without an entry (every
// event of a backlog of new contacts) and for one whose 16 fields are
// stored with older clocks.
func BenchmarkStoreCommit16(b *testing.B) {
	_, clocks, err := lww.Merge(events.TargetSkipcall, lww.Change{Patch: benchPatch16, Clock: at(10, "0b7e4c6a-evt-00000010"), Valid: true})
	if err != nil || len(clocks) != 16 {
		b.Fatal(err, len(clocks))
	}
	b.Run("new/publisher", func(b *testing.B) {
		js := natstest.JetStream(b)
		ctx := natstest.Context(b)
		s := newStore(b, js, lww.StoreConfig{})
		var contacts []string
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == len(contacts) { // contact ids made outside the timer
				b.StopTimer()
				for j := range 4096 {
					contacts = append(contacts, "c"+strconv.Itoa(i+j))
				}
				b.StartTimer()
			}
			if _, err := s.Commit(ctx, events.TargetSkipcall, contacts[i], lww.State{}, benchPatch16, clocks); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("stored/publisher", func(b *testing.B) {
		js := natstest.JetStream(b)
		ctx := natstest.Context(b)
		s := newStore(b, js, lww.StoreConfig{})
		_, oldClocks, _ := lww.Merge(events.TargetSkipcall, lww.Change{Patch: benchPatch16, Clock: at(1, "0b7e4c6a-evt-00000001"), Valid: true})
		if _, err := s.Commit(ctx, events.TargetSkipcall, "c", lww.State{}, benchPatch16, oldClocks); err != nil {
			b.Fatal(err)
		}
		st, err := s.Get(ctx, events.TargetSkipcall, "c")
		if err != nil || len(st.Fields) != 16 {
			b.Fatal(err, len(st.Fields))
		}
		b.ReportAllocs()
		for b.Loop() {
			// st keeps its older clocks, so every Commit writes; only
			// this benchmark writes to the bucket, so each write is the
			// next revision.
			if _, err := s.Commit(ctx, events.TargetSkipcall, "c", st, benchPatch16, clocks); err != nil {
				b.Fatal(err)
			}
			st.Revision++
		}
		b.StopTimer()
		if got, err := s.Get(ctx, events.TargetSkipcall, "c"); err != nil || got.Revision != st.Revision {
			b.Fatalf("revision %d, want %d (a write conflicted): %v", got.Revision, st.Revision, err)
		}
	})
}
