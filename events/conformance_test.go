package events_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/openapi"
)

// seedSchema loads the component schema name from the seed document data,
// as the provider published it (not the prose-corrected form).
func seedSchema(t *testing.T, data []byte, name string) *openapi3.Schema {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("load seed: %v", err)
	}
	ref, ok := doc.Components.Schemas[name]
	if !ok || ref.Value == nil {
		t.Fatalf("seed has no schema %s", name)
	}
	return ref.Value
}

// TestSeedConformance checks that the patch validator and the seed's
// request-body schema agree on accepting or rejecting each patch, except
// where the table records a deliberate difference (diff != ""), in which
// case the two must actually differ, with our verdict as ours says.
func TestSeedConformance(t *testing.T) {
	schemas := map[events.Target]*openapi3.Schema{
		events.TargetRevyOps:  seedSchema(t, openapi.RevyOps(), "PatchedContactPatchRequest"),
		events.TargetSkipcall: seedSchema(t, openapi.Skipcall(), "PublicUpdateContactDto"),
	}
	const (
		proseDomain  = "prose: company_id accepts a domain string"
		positiveID   = "company_id must be a positive integer"
		strictInt    = "integers must be written without fraction or exponent"
		unknownField = "unknown fields are rejected"
		emptyPatch   = "a patch must change at least one field"
		proseE164    = "prose: phone numbers are E.164"
		emptyName    = "custom field names must not be empty"
		valueLimit   = "field_value bounded by 2500 like ContactCustomFields"
	)
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name   string
		target events.Target
		patch  string
		ours   bool   // whether we accept
		diff   string // why the seed schema decides otherwise, or ""
	}{
		// RevyOps PatchedContactPatchRequest
		{"ro strings", events.TargetRevyOps, `{"email":"a@b.co","linkedin_url":"u","first_name":"A","last_name":"B","origin":"o","contact_status":"s"}`, true, ""},
		{"ro empty strings", events.TargetRevyOps, `{"first_name":""}`, true, ""},
		{"ro email number", events.TargetRevyOps, `{"email":5}`, false, ""},
		{"ro first_name null", events.TargetRevyOps, `{"first_name":null}`, false, ""},
		{"ro company_id int", events.TargetRevyOps, `{"company_id":12}`, true, ""},
		{"ro company_id null", events.TargetRevyOps, `{"company_id":null}`, true, ""},
		{"ro company_id float", events.TargetRevyOps, `{"company_id":1.5}`, false, ""},
		{"ro company_id bool", events.TargetRevyOps, `{"company_id":true}`, false, ""},
		{"ro company_id domain", events.TargetRevyOps, `{"company_id":"acme.com"}`, true, proseDomain},
		{"ro company_id not a domain", events.TargetRevyOps, `{"company_id":"acme"}`, false, ""},
		{"ro company_id zero", events.TargetRevyOps, `{"company_id":0}`, false, positiveID},
		{"ro company_id negative", events.TargetRevyOps, `{"company_id":-3}`, false, positiveID},
		{"ro company_id 12.0", events.TargetRevyOps, `{"company_id":12.0}`, false, strictInt},
		{"ro ccf ok", events.TargetRevyOps, `{"contact_custom_fields":[{"field_name":"a","field_value":"b"},{"field_name":"c","field_value":null},{"field_name":"d"}]}`, true, ""},
		{"ro ccf empty", events.TargetRevyOps, `{"contact_custom_fields":[]}`, true, ""},
		{"ro ccf null", events.TargetRevyOps, `{"contact_custom_fields":null}`, false, ""},
		{"ro ccf not array", events.TargetRevyOps, `{"contact_custom_fields":{}}`, false, ""},
		{"ro ccf item string", events.TargetRevyOps, `{"contact_custom_fields":["a"]}`, false, ""},
		{"ro ccf no field_name", events.TargetRevyOps, `{"contact_custom_fields":[{"field_value":"b"}]}`, false, ""},
		{"ro ccf field_name number", events.TargetRevyOps, `{"contact_custom_fields":[{"field_name":1}]}`, false, ""},
		{"ro ccf field_value number", events.TargetRevyOps, `{"contact_custom_fields":[{"field_name":"a","field_value":1}]}`, false, ""},
		{"ro ccf field_value 2500", events.TargetRevyOps, `{"contact_custom_fields":[{"field_name":"a","field_value":"` + long(2500) + `"}]}`, true, ""},
		{"ro ccf field_value 2501", events.TargetRevyOps, `{"contact_custom_fields":[{"field_name":"a","field_value":"` + long(2501) + `"}]}`, false, valueLimit},
		{"ro ccf field_name empty", events.TargetRevyOps, `{"contact_custom_fields":[{"field_name":""}]}`, false, emptyName},
		{"ro ccf unknown key", events.TargetRevyOps, `{"contact_custom_fields":[{"field_name":"a","id":1}]}`, false, unknownField},
		{"ro unknown field", events.TargetRevyOps, `{"firstName":"A"}`, false, unknownField},
		{"ro empty patch", events.TargetRevyOps, `{}`, false, emptyPatch},

		// Skipcall PublicUpdateContactDto
		{"sc strings", events.TargetSkipcall, `{"firstName":"A","lastName":"B","email":"e","company":"c","city":"c","country":"c","url":"u","linkedinUrl":"l","linkedinSalesUrl":"s","role":"r"}`, true, ""},
		{"sc firstName empty", events.TargetSkipcall, `{"firstName":""}`, false, ""},
		{"sc firstName 100", events.TargetSkipcall, `{"firstName":"` + strings.Repeat("é", 100) + `"}`, true, ""},
		{"sc firstName 101", events.TargetSkipcall, `{"firstName":"` + strings.Repeat("é", 101) + `"}`, false, ""},
		{"sc lastName 101", events.TargetSkipcall, `{"lastName":"` + long(101) + `"}`, false, ""},
		{"sc firstName null", events.TargetSkipcall, `{"firstName":null}`, false, ""},
		{"sc email null", events.TargetSkipcall, `{"email":null}`, false, ""},
		{"sc company 200", events.TargetSkipcall, `{"company":"` + long(200) + `"}`, true, ""},
		{"sc company 201", events.TargetSkipcall, `{"company":"` + long(201) + `"}`, false, ""},
		{"sc city 201", events.TargetSkipcall, `{"city":"` + long(201) + `"}`, false, ""},
		{"sc country 201", events.TargetSkipcall, `{"country":"` + long(201) + `"}`, false, ""},
		{"sc role 201", events.TargetSkipcall, `{"role":"` + long(201) + `"}`, false, ""},
		{"sc url number", events.TargetSkipcall, `{"url":1}`, false, ""},
		{"sc allowPhoneCalls", events.TargetSkipcall, `{"allowPhoneCalls":true}`, true, ""},
		{"sc allowPhoneCalls string", events.TargetSkipcall, `{"allowPhoneCalls":"true"}`, false, ""},
		{"sc phoneNumbers ok", events.TargetSkipcall, `{"phoneNumbers":["+33612345678","+33698765432"]}`, true, ""},
		{"sc phoneNumbers empty", events.TargetSkipcall, `{"phoneNumbers":[]}`, false, ""},
		{"sc phoneNumbers 21", events.TargetSkipcall, `{"phoneNumbers":[` + strings.TrimSuffix(strings.Repeat(`"+33612345678",`, 21), ",") + `]}`, false, ""},
		{"sc phoneNumbers number item", events.TargetSkipcall, `{"phoneNumbers":[33612345678]}`, false, ""},
		{"sc phoneNumbers not E.164", events.TargetSkipcall, `{"phoneNumbers":["0612345678"]}`, false, proseE164},
		{"sc customFields ok", events.TargetSkipcall, `{"customFields":{"industry":"Technology","team_size":"50-100"}}`, true, ""},
		{"sc customFields empty", events.TargetSkipcall, `{"customFields":{}}`, true, ""},
		{"sc customFields number", events.TargetSkipcall, `{"customFields":{"team_size":50}}`, false, ""},
		{"sc customFields null value", events.TargetSkipcall, `{"customFields":{"team_size":null}}`, false, ""},
		{"sc customFields not object", events.TargetSkipcall, `{"customFields":"x"}`, false, ""},
		{"sc customFields empty key", events.TargetSkipcall, `{"customFields":{"":"x"}}`, false, emptyName},
		{"sc unknown field", events.TargetSkipcall, `{"first_name":"A"}`, false, unknownField},
		{"sc empty patch", events.TargetSkipcall, `{}`, false, emptyPatch},
	}
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cid := "42"
			if tc.target == events.TargetSkipcall {
				cid = uuidLower
			}
			e := events.Event{ID: "e1", Target: tc.target, ContactID: cid, OccurredAt: at, Patch: json.RawMessage(tc.patch)}
			errs := e.Validate()
			for _, f := range errs {
				if f.Field != "patch" && !strings.HasPrefix(f.Field, "patch.") {
					t.Fatalf("envelope problem %+v", f)
				}
			}
			ours := len(errs) == 0

			var v any
			if err := json.Unmarshal([]byte(tc.patch), &v); err != nil {
				t.Fatal(err)
			}
			seedErr := schemas[tc.target].VisitJSON(v, openapi3.MultiErrors())
			seed := seedErr == nil

			if ours != tc.ours {
				t.Fatalf("we accept = %v, want %v (%v)", ours, tc.ours, errs)
			}
			switch {
			case tc.diff == "" && seed != ours:
				t.Fatalf("seed schema accept = %v, ours = %v: undocumented difference (seed: %v; ours: %v)", seed, ours, seedErr, errs)
			case tc.diff != "" && seed == ours:
				t.Fatalf("documented difference %q does not occur: both accept = %v", tc.diff, ours)
			}
		})
	}
}
