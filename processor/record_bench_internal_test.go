package processor

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/history"
	"github.com/patchbay/patchbay/processor/lww"
)

// BenchmarkRecordApplied16 is the history record of an applied delivery
// of one 16-field event to a new contact, built and published to the
// embedded server: what every applied event costs the worker with
// history on.
func BenchmarkRecordApplied16(b *testing.B) {
	js := natstest.JetStream(b)
	w := &Worker{history: history.NewRecorder(js.Conn(), "contacts"), now: time.Now}
	l := &lane{w: w, target: events.TargetSkipcall, name: string(events.TargetSkipcall)}
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	patch := json.RawMessage(`{"firstName":"Ada","lastName":"Lovelace","email":"ada@example.com",` +
		`"company":"Analytical Engines Ltd","city":"London","country":"United Kingdom","url":"https://example.com/ada",` +
		`"linkedinUrl":"https://linkedin.com/in/ada","linkedinSalesUrl":"https://linkedin.com/sales/ada","role":"Chief Mathematician",` +
		`"allowPhoneCalls":true,"phoneNumbers":["+442071234567","+442079876543"],` +
		`"customFields":{"industry":"Computing","team_size":"50-100","tier":"gold","notes":"first programmer"}}`)
	ev := events.Event{ID: "0b7e4c6a-evt-00000010", Target: events.TargetSkipcall, ContactID: "0b6c7c8e-6f1d-4a53-9d6e-000000000010", OccurredAt: at, Patch: patch}
	ch := lww.Change{Patch: patch, Clock: lww.Clock{At: at, ID: ev.ID, Source: "hubspot"}, Valid: true}
	_, clocks, err := lww.Merge(events.TargetSkipcall, ch)
	if err != nil || len(clocks) != 16 {
		b.Fatal(err, len(clocks))
	}
	d := &delivery{msgs: []pending{{seq: 12345}}, evs: []events.Event{ev}, changes: []lww.Change{ch}, clocks: clocks, sent: clocks}
	b.ReportAllocs()
	for b.Loop() {
		l.record(d, history.OutcomeApplied, 200)
	}
	if err := js.Conn().Flush(); err != nil {
		b.Fatal(err)
	}
}
