package events_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/patchbay/patchbay/events"
)

func TestMerge(t *testing.T) {
	cases := []struct {
		name    string
		target  events.Target
		patches []string
		want    string
	}{
		{"one patch unchanged", events.TargetSkipcall, []string{`{"city":"Paris"}`}, `{"city":"Paris"}`},
		{"later field wins, others kept", events.TargetSkipcall,
			[]string{`{"city":"Paris","role":"CTO"}`, `{"city":"Lyon"}`}, `{"city":"Lyon","role":"CTO"}`},
		{"phone numbers replace the list", events.TargetSkipcall,
			[]string{`{"phoneNumbers":["+33612345678","+33698765432"]}`, `{"phoneNumbers":["+14155550100"]}`}, `{"phoneNumbers":["+14155550100"]}`},
		{"customFields merge by key", events.TargetSkipcall,
			[]string{`{"customFields":{"industry":"Tech","size":"10"}}`, `{"customFields":{"size":"50"}}`, `{"firstName":"Ada"}`},
			`{"customFields":{"industry":"Tech","size":"50"},"firstName":"Ada"}`},
		{"html characters are not escaped", events.TargetSkipcall,
			[]string{`{"company":"A&B <x>"}`, `{"city":"Nice"}`}, `{"city":"Nice","company":"A&B <x>"}`},
		{"revyops custom fields upsert by field_name", events.TargetRevyOps,
			[]string{`{"contact_custom_fields":[{"field_name":"tier","field_value":"gold"},{"field_name":"region","field_value":"EU"}]}`,
				`{"contact_custom_fields":[{"field_name":"tier","field_value":null},{"field_name":"seats","field_value":"5"}]}`},
			`{"contact_custom_fields":[{"field_name":"tier","field_value":null},{"field_name":"region","field_value":"EU"},{"field_name":"seats","field_value":"5"}]}`},
		{"revyops company_id int then domain", events.TargetRevyOps,
			[]string{`{"company_id":7,"first_name":"A"}`, `{"company_id":"acme.com"}`}, `{"company_id":"acme.com","first_name":"A"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := make([]json.RawMessage, len(tc.patches))
			for i, p := range tc.patches {
				ps[i] = json.RawMessage(p)
			}
			got, err := events.Merge(tc.target, ps...)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	if _, err := events.Merge(events.TargetSkipcall, json.RawMessage(`{}`), json.RawMessage(`[1]`)); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("non-object patch: %v", err)
	}
}

func BenchmarkMerge(b *testing.B) {
	ps := []json.RawMessage{
		json.RawMessage(`{"firstName":"Ada","city":"Paris","customFields":{"industry":"Tech","size":"10"}}`),
		json.RawMessage(`{"city":"Lyon","customFields":{"size":"50"}}`),
		json.RawMessage(`{"role":"CTO","phoneNumbers":["+33612345678"]}`),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Merge(events.TargetSkipcall, ps...); err != nil {
			b.Fatal(err)
		}
	}
}
