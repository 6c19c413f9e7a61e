package sources_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/sources"
)

// FuzzDecodeCloudEvents: no panic; what decodes has the required
// attributes and a JSON object as data. Seeds: testdata/fuzz/FuzzDecodeCloudEvents.
//
//	go test -run '^$' -fuzz FuzzDecodeCloudEvents -fuzztime 60s ./sources/
func FuzzDecodeCloudEvents(f *testing.F) {
	f.Add(sources.MediaCloudEvents, "", structured("s-1"))
	f.Add("application/json", "1.0", ceData)
	f.Fuzz(func(t *testing.T, contentType, specVersion, body string) {
		h := http.Header{"Content-Type": {contentType}}
		if specVersion != "" {
			h.Set("ce-specversion", specVersion)
			h.Set("ce-id", "id-1")
			h.Set("ce-source", "urn:x")
			h.Set("ce-type", "t")
		}
		ces, err := sources.DecodeCloudEvents(h, []byte(body), 10)
		if err != nil {
			var ve *events.ValidationError
			if !errors.As(err, &ve) && !errors.Is(err, events.ErrMalformed) && !errors.Is(err, sources.ErrUnsupportedMedia) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if len(ces) == 0 || len(ces) > 10 {
			t.Fatalf("%d events", len(ces))
		}
		for _, ce := range ces {
			var obj map[string]json.RawMessage
			if ce.ID == "" || ce.Source == "" || ce.Type == "" || json.Unmarshal(ce.Data, &obj) != nil {
				t.Fatalf("decoded an invalid event %+v", ce)
			}
		}
	})
}

// FuzzMapping: mapping a HubSpot-shaped or generic CRM payload never
// panics, and whatever passes Validate is a valid event by the events
// package's own decoder, the worker's: nothing invalid can be published.
// Seeds: testdata/fuzz/FuzzMapping.
//
//	go test -run '^$' -fuzz FuzzMapping -fuzztime 60s ./sources/
func FuzzMapping(f *testing.F) {
	set := loadTestSources(f)
	f.Add("hubspot", `[{"eventId":1,"occurredAt":1795600800000,"subscriptionType":"contact.propertyChange","objectId":1,"propertyName":"phone","propertyValue":"+33612345678"}]`)
	f.Add("crm", `{"contact":{"revyops_id":42,"first_name":"Grace","company_domain":"acme.com"},"updated_at":"2026-11-25T10:00:00Z"}`)
	f.Fuzz(func(t *testing.T, name, body string) {
		src, ok := set.Get(name)
		if !ok {
			return
		}
		r := &sources.Request{Method: "POST", Body: []byte(body), Now: time.Now(),
			Header: http.Header{"Content-Type": {"application/json"}, "X-Delivery-Id": {"d-1"}, "Webhook-Id": {"w-1"}}}
		ms, err := src.Map(r, events.Limits{MaxBatch: 50})
		if err != nil {
			var ve *events.ValidationError
			if !errors.As(err, &ve) && !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		for i := range ms {
			if src.LookupContacts() {
				ms[i].SetContactID("0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c")
			}
		}
		if err := src.Validate(ms, events.Limits{MaxBatch: 50}); err != nil {
			for _, m := range ms {
				if m.Event.ID != "" {
					t.Fatal("an event was set from an invalid batch")
				}
			}
			return
		}
		for _, m := range ms {
			data, err := m.Event.Marshal()
			if err != nil {
				t.Fatalf("marshal %+v: %v", m.Event, err)
			}
			ev, err := events.Decode(data)
			if err != nil {
				t.Fatalf("a validated event fails the worker's decoder: %v\n%s", err, data)
			}
			if !strings.HasPrefix(ev.ID, name+":") {
				t.Fatalf("event id %q lacks the source prefix", ev.ID)
			}
		}
	})
}
