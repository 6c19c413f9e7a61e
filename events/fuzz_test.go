package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/events"
)

func FuzzDecodeRequest(f *testing.F) {
	seeds := []string{
		sc(), ro(), ro("structure", `"FLAT"`, "contact_id", `"007"`),
		sc("contact_id", jstr(uuidUpper)),
		scPatch(`{"firstName":"Zoë \u00e9 \ud83d\ude00","phoneNumbers":["+33612345678"],"customFields":{"a":"b"}}`),
		roPatch(`{"company_id":"acme.com","contact_custom_fields":[{"field_name":"a","field_value":null}]}`),
		"[" + sc() + "," + ro() + "]",
		`[]`, `{}`, `null`, `"x"`, `{"id":`, `[{"id":"a"},1]`, sc("id", "-"),
		scPatch(`{"firstName":"\ud800"}`),
		benchEvent(1),
	}
	for _, s := range seeds {
		f.Add([]byte(s), "")
	}
	f.Add([]byte(sc("id", "-")), "hdr-1")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		evs, _, err := events.DecodeRequest(body, header, events.Limits{MaxBatch: 50})
		if err != nil {
			var ve *events.ValidationError
			if !errors.Is(err, events.ErrMalformed) && !errors.As(err, &ve) {
				t.Fatalf("error %v is neither ErrMalformed nor *ValidationError", err)
			}
			if evs != nil {
				t.Fatal("events returned with an error")
			}
			return
		}
		if len(evs) == 0 {
			t.Fatal("no events and no error")
		}
		for _, e := range evs {
			if errs := e.Validate(); errs != nil {
				t.Fatalf("accepted event fails Validate: %v", errs)
			}
			data, err := e.Marshal()
			if err != nil {
				t.Fatalf("Marshal accepted event: %v", err)
			}
			assertMarshalMatches(t, &e)
			if _, fast := events.DecodeStored(data); !fast && !strings.ContainsRune(e.ID, '\\') && !strings.ContainsRune(e.ID, '"') {
				t.Fatalf("stored form %s does not take Decode's fast path", data)
			}
			got, err := events.Decode(data)
			if err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			assertEqualEvents(t, e, got)
			again, err := got.Marshal()
			if err != nil || string(again) != string(data) {
				t.Fatalf("re-Marshal = %s, %v; want %s", again, err, data)
			}
		}
	})
}
