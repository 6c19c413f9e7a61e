package events_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/events"
)

// benchPatch is a Skipcall patch of about 900 bytes.
const benchPatch = `{"firstName":"Zoë","lastName":"Durand","email":"zoe.durand@example.com",` +
	`"company":"Acme Industries International","city":"Paris","country":"France",` +
	`"url":"https://www.acme-industries.example.com/about/team/zoe-durand",` +
	`"linkedinUrl":"https://www.linkedin.com/in/zoe-durand-4a3b2c1d",` +
	`"linkedinSalesUrl":"https://www.linkedin.com/sales/people/ACwAAAzoeDurand,NAME_SEARCH,abcd",` +
	`"role":"Chief Technology Officer","allowPhoneCalls":true,` +
	`"phoneNumbers":["+33612345678","+33698765432","+14155550100"],` +
	`"customFields":{"industry":"Technology","team_size":"50-100","lead_source":"webinar",` +
	`"lifecycle_stage":"marketing_qualified_lead","preferred_language":"fr","timezone":"Europe/Paris",` +
	`"last_campaign":"2024-spring-product-launch","account_owner":"jean.martin@example.com",` +
	`"notes":"Met at the Paris tech summit; interested in the enterprise plan and SSO integration."}}`

// benchEvent returns a ~1 KiB Skipcall event with id i.
func benchEvent(i int) string {
	return `{"id":"evt-` + strconv.Itoa(i) + `-2f1c9a7e","target":"skipcall","contact_id":"` + uuidUpper +
		`","occurred_at":"2024-05-01T12:00:00.123456Z","patch":` + benchPatch + `}`
}

// notesPatch is the patch of the process bench's events (internal/perf):
// keys in encoding/json's order, a 380-character note.
var notesPatch = `{"allowPhoneCalls":true,"city":"London","company":"Analytical Engines Ltd","country":"United Kingdom",` +
	`"customFields":{"industry":"Computing","notes":"` + strings.Repeat("n", 380) + `","team_size":"50-100"},` +
	`"email":"ada@example.com","firstName":"Ada","lastName":"Lovelace","linkedinUrl":"https://linkedin.com/in/ada",` +
	`"phoneNumbers":["+442071234567","+442079876543"],"role":"Chief Mathematician","url":"https://example.com/ada"}`

func BenchmarkDecodeRequest(b *testing.B) {
	items := make([]string, 100)
	notes := make([]string, 100)
	for i := range items {
		items[i] = benchEvent(i)
		notes[i] = `{"id":"run-` + strconv.Itoa(i) + `","target":"skipcall","contact_id":"b0b0b0b0-0000-4000-8000-` +
			strconv.Itoa(100000000000+i) + `","occurred_at":"2026-11-25T10:00:00Z","patch":` + notesPatch + `}`
	}
	cases := []struct {
		name string
		body []byte
	}{
		{"single", []byte(benchEvent(0))},
		{"batch100", []byte("[" + strings.Join(items, ",") + "]")},
		{"batch100-notes", []byte("[" + strings.Join(notes, ",") + "]")},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				if _, _, err := events.DecodeRequest(bc.body, "", events.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode reads a stored event with Decode, and with DecodeShared,
// which leaves the patch in data instead of copying it, as the worker
// decodes.
func BenchmarkDecode(b *testing.B) {
	evs, _, err := events.DecodeRequest([]byte(benchEvent(0)), "", events.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	data, err := evs[0].Marshal()
	if err != nil {
		b.Fatal(err)
	}
	for name, decode := range map[string]func([]byte) (events.Event, error){"copy": events.Decode, "shared": events.DecodeShared} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarshal(b *testing.B) {
	evs, _, err := events.DecodeRequest([]byte(benchEvent(0)), "", events.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := evs[0].Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngestPath is what ingest does to a request body before
// publishing: DecodeRequest, then Marshal of every event.
func BenchmarkIngestPath(b *testing.B) {
	items := make([]string, 100)
	for i := range items {
		items[i] = benchEvent(i)
	}
	cases := []struct {
		name string
		body []byte
	}{
		{"single", []byte(benchEvent(0))},
		{"batch100", []byte("[" + strings.Join(items, ",") + "]")},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				evs, _, err := events.DecodeRequest(bc.body, "", events.Limits{})
				if err != nil {
					b.Fatal(err)
				}
				for i := range evs {
					if _, err := evs[i].Marshal(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
