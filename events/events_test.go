package events_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
)

func TestTargets(t *testing.T) {
	got := events.Targets()
	want := []events.Target{events.TargetRevyOps, events.TargetSkipcall}
	if !slices.Equal(got, want) {
		t.Fatalf("Targets() = %v, want %v", got, want)
	}
	got[0] = "mutated"
	if events.Targets()[0] != events.TargetRevyOps {
		t.Fatal("Targets shares its backing array")
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"skipcall minimal", sc()},
		{"skipcall full", scPatch(`{
			"firstName": "Zoë", "lastName": "O'Brien <&>", "email": "zoe@example.com",
			"company": "Acme", "city": "Paris", "country": "France", "url": "https://example.com/?a=1&b=2",
			"linkedinUrl": "https://linkedin.com/in/zoe", "linkedinSalesUrl": "https://linkedin.com/sales/zoe",
			"role": "CTO", "allowPhoneCalls": false, "phoneNumbers": ["+33612345678", "+14155550100"],
			"customFields": {"industry": "Technology", "team_size": "50-100", "emoji": "\ud83d\ude00 \u00e9"}}`)},
		{"skipcall upper-case surrogate pair", scPatch(`{"firstName":"\uD83D\uDE00 \uDBFF\uDFFF \uD800\uDC00"}`)},
		{"skipcall offset time", sc("occurred_at", `"2024-05-01T14:30:00.123456789+02:00"`)},
		{"revyops minimal", ro()},
		{"revyops full", roPatch(`{"email":"a@b.co","linkedin_url":"https://l/x","first_name":"A","last_name":"B",
			"company_id":"acme.com","origin":"api","contact_status":"active",
			"contact_custom_fields":[{"field_name":"tier","field_value":"gold"},{"field_name":"x","field_value":null}]}`)},
		{"revyops structure", ro("structure", `"FLAT"`, "contact_id", `"0042"`)},
		{"revyops company null", roPatch(`{"company_id":null}`)},
		{"revyops company int", roPatch(`{"company_id":12345}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, isArray, err := events.DecodeRequest([]byte(tc.body), "", events.Limits{})
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if isArray || len(evs) != 1 {
				t.Fatalf("got %d events, isArray %v", len(evs), isArray)
			}
			data, err := evs[0].Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := events.Decode(data)
			if err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			assertEqualEvents(t, evs[0], got)
			again, err := got.Marshal()
			if err != nil || string(again) != string(data) {
				t.Fatalf("re-Marshal = %s, %v; want %s", again, err, data)
			}
			if strings.ContainsAny(string(data), "\n\t") {
				t.Fatalf("stored form is not compact: %s", data)
			}
		})
	}
}

// TestValidationRules has one failing case per rule and asserts the exact
// field paths reported.
func TestValidationRules(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	phones := func(n int) string {
		p := make([]string, n)
		for i := range p {
			p[i] = jstr("+3361234567" + strconv.Itoa(i%10))
		}
		return "[" + strings.Join(p, ",") + "]"
	}
	manyKeys := func(n int) string {
		k := make([]string, n)
		for i := range k {
			k[i] = `"k` + strconv.Itoa(i) + `":"x"`
		}
		return strings.Join(k, ",")
	}
	tests := []struct {
		name   string
		body   string
		header string
		want   []string // fields, sorted; nil means valid
		reason string   // substring of the first reason, optional
	}{
		// envelope
		{name: "valid skipcall", body: sc()},
		{name: "valid revyops", body: ro()},
		{name: "unknown top-level key", body: sc("foo", `1`), want: []string{"foo"}, reason: "unknown field"},
		{name: "duplicate key", body: sc()[:len(sc())-1] + `,"id":"other"}`, want: []string{"id"}, reason: "duplicate"},
		{name: "id missing", body: sc("id", "-"), want: []string{"id"}, reason: "required"},
		{name: "id empty", body: sc("id", `""`), want: []string{"id"}},
		{name: "id 200 bytes", body: sc("id", jstr(long(200)))},
		{name: "id 201 bytes", body: sc("id", jstr(long(201))), want: []string{"id"}, reason: "200"},
		{name: "id of ! and ~", body: sc("id", `"!a~"`)},
		{name: "id with space", body: sc("id", `"a b"`), want: []string{"id"}, reason: "printable ASCII"},
		{name: "id non-ASCII", body: sc("id", `"évt"`), want: []string{"id"}},
		{name: "id control char", body: sc("id", `"a\u0001"`), want: []string{"id"}},
		{name: "id number", body: sc("id", `17`), want: []string{"id"}, reason: "must be a string"},
		{name: "id null", body: sc("id", `null`), want: []string{"id"}},
		{name: "target missing", body: sc("target", "-"), want: []string{"target"}, reason: "is required"},
		{name: "target unknown", body: sc("target", `"hubspot"`), want: []string{"target"}, reason: `must be "revyops" or "skipcall"`},
		{name: "target wrong case", body: sc("target", `"Skipcall"`), want: []string{"target"}},
		{name: "target number", body: sc("target", `1`), want: []string{"target"}},
		{name: "contact_id missing", body: sc("contact_id", "-"), want: []string{"contact_id"}, reason: "required"},
		{name: "revyops contact_id max int64", body: ro("contact_id", `"9223372036854775807"`)},
		{name: "revyops contact_id 0", body: ro("contact_id", `0`), want: []string{"contact_id"}},
		{name: "revyops contact_id \"0\"", body: ro("contact_id", `"000"`), want: []string{"contact_id"}},
		{name: "revyops contact_id negative", body: ro("contact_id", `-5`), want: []string{"contact_id"}},
		{name: "revyops contact_id negative string", body: ro("contact_id", `"-5"`), want: []string{"contact_id"}},
		{name: "revyops contact_id float", body: ro("contact_id", `1.5`), want: []string{"contact_id"}},
		{name: "revyops contact_id 1.0", body: ro("contact_id", `1.0`), want: []string{"contact_id"}},
		{name: "revyops contact_id exponent", body: ro("contact_id", `1e3`), want: []string{"contact_id"}},
		{name: "revyops contact_id float string", body: ro("contact_id", `"1.5"`), want: []string{"contact_id"}},
		{name: "revyops contact_id plus", body: ro("contact_id", `"+5"`), want: []string{"contact_id"}},
		{name: "revyops contact_id space", body: ro("contact_id", `" 5"`), want: []string{"contact_id"}},
		{name: "revyops contact_id over int64", body: ro("contact_id", `"9223372036854775808"`), want: []string{"contact_id"}, reason: "at most"},
		{name: "revyops contact_id over int64 number", body: ro("contact_id", `99999999999999999999`), want: []string{"contact_id"}},
		{name: "revyops contact_id empty", body: ro("contact_id", `""`), want: []string{"contact_id"}},
		{name: "revyops contact_id bool", body: ro("contact_id", `true`), want: []string{"contact_id"}},
		{name: "revyops contact_id uuid", body: ro("contact_id", jstr(uuidLower)), want: []string{"contact_id"}},
		{name: "skipcall contact_id number", body: sc("contact_id", `123`), want: []string{"contact_id"}, reason: "must be a string"},
		{name: "skipcall contact_id braces", body: sc("contact_id", jstr("{"+uuidLower+"}")), want: []string{"contact_id"}},
		{name: "skipcall contact_id urn", body: sc("contact_id", jstr("urn:uuid:"+uuidLower)), want: []string{"contact_id"}},
		{name: "skipcall contact_id no hyphens", body: sc("contact_id", jstr(strings.ReplaceAll(uuidLower, "-", ""))), want: []string{"contact_id"}},
		{name: "skipcall contact_id nil uuid", body: sc("contact_id", `"00000000-0000-0000-0000-000000000000"`), want: []string{"contact_id"}},
		{name: "skipcall contact_id not hex", body: sc("contact_id", `"zzzzzzzz-e29b-41d4-a716-446655440000"`), want: []string{"contact_id"}},
		{name: "skipcall contact_id digits", body: sc("contact_id", `"42"`), want: []string{"contact_id"}},
		{name: "occurred_at missing", body: sc("occurred_at", "-"), want: []string{"occurred_at"}},
		{name: "occurred_at empty", body: sc("occurred_at", `""`), want: []string{"occurred_at"}},
		{name: "occurred_at date only", body: sc("occurred_at", `"2024-05-01"`), want: []string{"occurred_at"}, reason: "RFC 3339"},
		{name: "occurred_at no zone", body: sc("occurred_at", `"2024-05-01T12:00:00"`), want: []string{"occurred_at"}},
		{name: "occurred_at words", body: sc("occurred_at", `"yesterday"`), want: []string{"occurred_at"}},
		{name: "occurred_at number", body: sc("occurred_at", `1714564800`), want: []string{"occurred_at"}},
		{name: "occurred_at zero", body: sc("occurred_at", `"0001-01-01T00:00:00Z"`), want: []string{"occurred_at"}},
		{name: "structure NESTED revyops", body: ro("structure", `"NESTED"`)},
		{name: "structure for skipcall", body: sc("structure", `"FLAT"`), want: []string{"structure"}, reason: "only valid for target revyops"},
		{name: "structure lower case", body: ro("structure", `"flat"`), want: []string{"structure"}},
		{name: "structure empty", body: ro("structure", `""`), want: []string{"structure"}},
		{name: "structure number", body: ro("structure", `1`), want: []string{"structure"}},
		{name: "structure null", body: ro("structure", `null`), want: []string{"structure"}},
		{name: "patch missing", body: sc("patch", "-"), want: []string{"patch"}, reason: "required"},
		{name: "patch string", body: sc("patch", `"{}"`), want: []string{"patch"}},
		{name: "patch array", body: sc("patch", `[]`), want: []string{"patch"}},
		{name: "patch null", body: sc("patch", `null`), want: []string{"patch"}},
		{name: "patch empty", body: sc("patch", `{ }`), want: []string{"patch"}, reason: "at least one field"},
		{name: "everything wrong", body: `{"id":"a b","target":"skipcall","contact_id":5,"occurred_at":"x","structure":"FLAT","patch":{"firstName":"","x":1},"y":2}`,
			want: []string{"contact_id", "id", "occurred_at", "patch.firstName", "patch.x", "structure", "y"}},

		// skipcall patch
		{name: "sc firstName empty", body: scPatch(`{"firstName":""}`), want: []string{"patch.firstName"}, reason: "1 to 100 characters"},
		{name: "sc firstName 100 runes", body: scPatch(`{"firstName":"` + strings.Repeat("é", 100) + `"}`)},
		{name: "sc firstName 100 escaped runes", body: scPatch(`{"firstName":"` + strings.Repeat(`\u00e9`, 100) + `"}`)},
		{name: "sc firstName 101 runes", body: scPatch(`{"firstName":"` + strings.Repeat("é", 101) + `"}`), want: []string{"patch.firstName"}},
		{name: "sc firstName null", body: scPatch(`{"firstName":null}`), want: []string{"patch.firstName"}, reason: "not null"},
		{name: "sc firstName number", body: scPatch(`{"firstName":5}`), want: []string{"patch.firstName"}},
		{name: "sc lastName 101", body: scPatch(`{"lastName":"` + long(101) + `"}`), want: []string{"patch.lastName"}},
		{name: "sc lastName empty", body: scPatch(`{"lastName":""}`), want: []string{"patch.lastName"}},
		{name: "sc email number", body: scPatch(`{"email":5}`), want: []string{"patch.email"}},
		{name: "sc email long ok", body: scPatch(`{"email":"` + long(1000) + `"}`)},
		{name: "sc url null", body: scPatch(`{"url":null}`), want: []string{"patch.url"}},
		{name: "sc linkedinUrl bool", body: scPatch(`{"linkedinUrl":true}`), want: []string{"patch.linkedinUrl"}},
		{name: "sc linkedinSalesUrl object", body: scPatch(`{"linkedinSalesUrl":{}}`), want: []string{"patch.linkedinSalesUrl"}},
		{name: "sc company 200", body: scPatch(`{"company":"` + long(200) + `"}`)},
		{name: "sc company 201", body: scPatch(`{"company":"` + long(201) + `"}`), want: []string{"patch.company"}, reason: "at most 200 characters"},
		{name: "sc city 201", body: scPatch(`{"city":"` + long(201) + `"}`), want: []string{"patch.city"}},
		{name: "sc country 201", body: scPatch(`{"country":"` + long(201) + `"}`), want: []string{"patch.country"}},
		{name: "sc role 201", body: scPatch(`{"role":"` + long(201) + `"}`), want: []string{"patch.role"}},
		{name: "sc company empty ok", body: scPatch(`{"company":""}`)},
		{name: "sc allowPhoneCalls string", body: scPatch(`{"allowPhoneCalls":"yes"}`), want: []string{"patch.allowPhoneCalls"}},
		{name: "sc allowPhoneCalls null", body: scPatch(`{"allowPhoneCalls":null}`), want: []string{"patch.allowPhoneCalls"}},
		{name: "sc phoneNumbers 20", body: scPatch(`{"phoneNumbers":` + phones(20) + `}`)},
		{name: "sc phoneNumbers empty", body: scPatch(`{"phoneNumbers":[]}`), want: []string{"patch.phoneNumbers"}},
		{name: "sc phoneNumbers 21", body: scPatch(`{"phoneNumbers":` + phones(21) + `}`), want: []string{"patch.phoneNumbers"}, reason: "1 to 20"},
		{name: "sc phoneNumbers not array", body: scPatch(`{"phoneNumbers":"+33612345678"}`), want: []string{"patch.phoneNumbers"}},
		{name: "sc phoneNumbers null", body: scPatch(`{"phoneNumbers":null}`), want: []string{"patch.phoneNumbers"}},
		{name: "sc phoneNumbers not E.164", body: scPatch(`{"phoneNumbers":["+33612345678","0612345678","+1","+0612345678","+1234567890123456","+33 612"]}`),
			want: []string{"patch.phoneNumbers[1]", "patch.phoneNumbers[2]", "patch.phoneNumbers[3]", "patch.phoneNumbers[4]", "patch.phoneNumbers[5]"}, reason: "E.164"},
		{name: "sc phoneNumbers item number", body: scPatch(`{"phoneNumbers":[33612345678]}`), want: []string{"patch.phoneNumbers[0]"}},
		{name: "sc phoneNumbers 15 digits", body: scPatch(`{"phoneNumbers":["+123456789012345","+12"]}`)},
		{name: "sc phoneNumbers country code 9", body: scPatch(`{"phoneNumbers":["+971501234567"]}`)},
		{name: "sc customFields ok", body: scPatch(`{"customFields":{"industry":"Tech","team_size":"50-100"}}`)},
		{name: "sc customFields empty object ok", body: scPatch(`{"customFields":{}}`)},
		{name: "sc customFields not object", body: scPatch(`{"customFields":["a"]}`), want: []string{"patch.customFields"}},
		{name: "sc customFields null", body: scPatch(`{"customFields":null}`), want: []string{"patch.customFields"}},
		{name: "sc customFields number value", body: scPatch(`{"customFields":{"industry":5}}`), want: []string{"patch.customFields.industry"}},
		{name: "sc customFields null value", body: scPatch(`{"customFields":{"industry":null}}`), want: []string{"patch.customFields.industry"}},
		{name: "sc customFields empty key", body: scPatch(`{"customFields":{"":"x"}}`), want: []string{"patch.customFields"}, reason: "keys"},
		{name: "sc customFields duplicate key", body: scPatch(`{"customFields":{"a":"x","a":"y"}}`), want: []string{"patch.customFields.a"}},
		{name: "sc customFields duplicate beyond 16 keys", body: scPatch(`{"customFields":{` + manyKeys(20) + `,"k0":"y","k17":"y"}}`),
			want: []string{"patch.customFields.k0", "patch.customFields.k17"}, reason: "duplicate key"},
		{name: "sc unknown field", body: scPatch(`{"firstName":"A","foo":1}`), want: []string{"patch.foo"}, reason: "unknown field"},
		{name: "sc revyops field", body: scPatch(`{"first_name":"A"}`), want: []string{"patch.first_name"}},
		{name: "sc field names are case sensitive", body: scPatch(`{"FirstName":"A"}`), want: []string{"patch.FirstName"}},
		{name: "sc duplicate field", body: scPatch(`{"firstName":"A","firstName":"B"}`), want: []string{"patch.firstName"}},
		{name: "sc escaped key matches", body: scPatch(`{"first\u004eame":"A"}`)},
		// a string that ends in an escaped backslash ends at the next quote
		{name: "sc values ending in a backslash", body: sc("id", `"a\\"`, "patch", `{"firstName":"A\\","lastName":"B\\\\","city":"\\\""}`)},
		{name: "sc value ending in a backslash, then a problem", body: scPatch(`{"firstName":"A\\","zz":1}`), want: []string{"patch.zz"}},
		{name: "sc several problems", body: scPatch(`{"firstName":"","company":"` + long(201) + `","zzz":1,"phoneNumbers":["x"]}`),
			want: []string{"patch.company", "patch.firstName", "patch.phoneNumbers[0]", "patch.zzz"}},

		// revyops patch
		{name: "ro email number", body: roPatch(`{"email":5}`), want: []string{"patch.email"}},
		{name: "ro linkedin_url null", body: roPatch(`{"linkedin_url":null}`), want: []string{"patch.linkedin_url"}},
		{name: "ro first_name null", body: roPatch(`{"first_name":null}`), want: []string{"patch.first_name"}},
		{name: "ro last_name array", body: roPatch(`{"last_name":[]}`), want: []string{"patch.last_name"}},
		{name: "ro origin bool", body: roPatch(`{"origin":true}`), want: []string{"patch.origin"}},
		{name: "ro contact_status object", body: roPatch(`{"contact_status":{}}`), want: []string{"patch.contact_status"}},
		{name: "ro first_name empty ok", body: roPatch(`{"first_name":""}`)},
		{name: "ro company_id int", body: roPatch(`{"company_id":7}`)},
		{name: "ro company_id domain", body: roPatch(`{"company_id":"sub.Acme-Corp.co.uk"}`)},
		{name: "ro company_id domain of z Z 0 9", body: roPatch(`{"company_id":"z0-9Z.xyz"}`)},
		{name: "ro company_id 63-byte label", body: roPatch(`{"company_id":"` + long(63) + `.com"}`)},
		{name: "ro company_id 64-byte label", body: roPatch(`{"company_id":"` + long(64) + `.com"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id 253 bytes", body: roPatch(`{"company_id":"` + strings.Repeat(long(62)+".", 4) + `a"}`)},
		{name: "ro company_id 254 bytes", body: roPatch(`{"company_id":"` + strings.Repeat(long(62)+".", 4) + `ab"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id last label 9", body: roPatch(`{"company_id":"acme.9"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id null", body: roPatch(`{"company_id":null}`)},
		{name: "ro company_id 0", body: roPatch(`{"company_id":0}`), want: []string{"patch.company_id"}},
		{name: "ro company_id negative", body: roPatch(`{"company_id":-1}`), want: []string{"patch.company_id"}},
		{name: "ro company_id float", body: roPatch(`{"company_id":1.5}`), want: []string{"patch.company_id"}},
		{name: "ro company_id too big", body: roPatch(`{"company_id":9223372036854775808}`), want: []string{"patch.company_id"}},
		{name: "ro company_id single label", body: roPatch(`{"company_id":"acme"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id digit string", body: roPatch(`{"company_id":"123"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id ip", body: roPatch(`{"company_id":"1.2.3.4"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id empty label", body: roPatch(`{"company_id":"acme..com"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id hyphen edge", body: roPatch(`{"company_id":"-acme.com"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id url", body: roPatch(`{"company_id":"https://acme.com"}`), want: []string{"patch.company_id"}},
		{name: "ro company_id bool", body: roPatch(`{"company_id":true}`), want: []string{"patch.company_id"}},
		{name: "ro ccf ok", body: roPatch(`{"contact_custom_fields":[{"field_name":"a","field_value":"` + long(2500) + `"},{"field_name":"b","field_value":null},{"field_name":"c"}]}`)},
		{name: "ro ccf empty array ok", body: roPatch(`{"contact_custom_fields":[]}`)},
		{name: "ro ccf not array", body: roPatch(`{"contact_custom_fields":{"field_name":"a"}}`), want: []string{"patch.contact_custom_fields"}},
		{name: "ro ccf null", body: roPatch(`{"contact_custom_fields":null}`), want: []string{"patch.contact_custom_fields"}},
		{name: "ro ccf item not object", body: roPatch(`{"contact_custom_fields":["a"]}`), want: []string{"patch.contact_custom_fields[0]"}},
		{name: "ro ccf field_name missing", body: roPatch(`{"contact_custom_fields":[{"field_value":"x"}]}`), want: []string{"patch.contact_custom_fields[0].field_name"}, reason: "required"},
		{name: "ro ccf field_name empty", body: roPatch(`{"contact_custom_fields":[{"field_name":""}]}`), want: []string{"patch.contact_custom_fields[0].field_name"}, reason: "must not be empty"},
		{name: "ro ccf field_name null", body: roPatch(`{"contact_custom_fields":[{"field_name":null}]}`), want: []string{"patch.contact_custom_fields[0].field_name"}, reason: "must be a string, not null"},
		{name: "ro ccf field_value number", body: roPatch(`{"contact_custom_fields":[{"field_name":"a","field_value":5}]}`), want: []string{"patch.contact_custom_fields[0].field_value"}},
		{name: "ro ccf field_value 2501", body: roPatch(`{"contact_custom_fields":[{"field_name":"a","field_value":"` + long(2501) + `"}]}`), want: []string{"patch.contact_custom_fields[0].field_value"}, reason: "2500"},
		{name: "ro ccf unknown key", body: roPatch(`{"contact_custom_fields":[{"field_name":"a","id":1}]}`), want: []string{"patch.contact_custom_fields[0].id"}, reason: "unknown field"},
		{name: "ro ccf second item", body: roPatch(`{"contact_custom_fields":[{"field_name":"a"},{"field_value":"b"}]}`), want: []string{"patch.contact_custom_fields[1].field_name"}},
		{name: "ro unknown field", body: roPatch(`{"firstName":"A"}`), want: []string{"patch.firstName"}, reason: "unknown field"},
		{name: "ro duplicate field", body: roPatch(`{"email":"a","email":"b"}`), want: []string{"patch.email"}},

		// header id
		{name: "header supplies id", body: sc("id", "-"), header: "hdr-1"},
		{name: "header matches id", body: sc(), header: "evt-sc-1"},
		{name: "header differs from id", body: sc(), header: "hdr-1", want: []string{"id"}, reason: "header"},
		{name: "header id invalid", body: sc("id", "-"), header: "has space", want: []string{"id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, _, err := events.DecodeRequest([]byte(tc.body), tc.header, events.Limits{})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("DecodeRequest(%s) = %v, want success", tc.body, err)
				}
				if len(evs) != 1 {
					t.Fatalf("got %d events", len(evs))
				}
				return
			}
			var ve *events.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("DecodeRequest(%s) error = %v, want *ValidationError", tc.body, err)
			}
			if !errors.Is(err, events.ErrInvalid) || errors.Is(err, events.ErrMalformed) {
				t.Fatalf("error %v: Is(ErrInvalid)=%v Is(ErrMalformed)=%v", err, errors.Is(err, events.ErrInvalid), errors.Is(err, events.ErrMalformed))
			}
			if evs != nil {
				t.Fatalf("got events with an error: %v", evs)
			}
			if got := fields(ve.Errors); !slices.Equal(got, tc.want) {
				t.Fatalf("fields = %q, want %q (%v)", got, tc.want, ve)
			}
			for _, f := range ve.Errors {
				if f.Index != 0 || f.Reason == "" {
					t.Fatalf("bad problem %+v", f)
				}
			}
			if tc.reason != "" && !strings.Contains(ve.Errors[0].Reason, tc.reason) {
				t.Fatalf("reason %q does not mention %q", ve.Errors[0].Reason, tc.reason)
			}
		})
	}
}

func TestDecodeRequestMalformed(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		detail string
	}{
		{"empty", "", "empty"},
		{"spaces", " \n\t", "empty"},
		{"not json", "hello", "offset"},
		{"truncated", `{"id":"a"`, "offset"},
		{"trailing data", sc() + ` {}`, "offset"},
		{"string", `"event"`, "not a string"},
		{"number", `5`, "not a number"},
		{"null", `null`, "not null"},
		{"array of numbers", `[1]`, "element 0"},
		{"array with a non-object", `[` + sc() + `,"x"]`, "element 1"},
		{"nested array", `[[` + sc() + `]]`, "element 0"},
		{"invalid UTF-8", "{\"id\":\"a\xff\"}", "UTF-8"},
		{"invalid UTF-8 in patch", scPatch("{\"firstName\":\"\xc3\"}"), "UTF-8"},
		{"lone high surrogate", scPatch(`{"firstName":"\ud800"}`), "surrogate"},
		{"lone low surrogate", scPatch(`{"firstName":"\udc00x"}`), "surrogate"},
		{"reversed surrogates", scPatch(`{"firstName":"\ude00\ud83d"}`), "surrogate"},
		// The offset an error names is the first bad byte or escape, so a
		// client can find it: 9 is just past `{"id":"ab`, 10 past `{"id":"`
		// and a valid U+FFFD (which utf8.DecodeRune also reads as RuneError).
		{"invalid UTF-8 names its offset", "{\"id\":\"ab\xff\"}", "invalid UTF-8 at offset 9"},
		{"invalid UTF-8 after U+FFFD", "{\"id\":\"\xef\xbf\xbd\xff\"}", "invalid UTF-8 at offset 10"},
		{"invalid UTF-8 at offset 0", "\xff{}", "invalid UTF-8 at offset 0"},
		{"lone surrogate names its offset", `{"id":"ab\ud800"}`, "surrogate escape at offset 9"},
		{"upper-case lone surrogate", `{"id":"\uD800"}`, "surrogate escape at offset 7"},
		{"upper-case reversed surrogates", `{"id":"\uDE00\uD83D"}`, "surrogate escape at offset 7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, _, err := events.DecodeRequest([]byte(tc.body), "", events.Limits{})
			if !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("DecodeRequest(%q) = %v, want ErrMalformed", tc.body, err)
			}
			var ve *events.ValidationError
			if errors.As(err, &ve) || evs != nil {
				t.Fatalf("got %v, %v", evs, err)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("error %q does not mention %q", err, tc.detail)
			}
		})
	}
}

func TestDecodeRequestBatch(t *testing.T) {
	valid := func(id string) string { return sc("id", jstr(id)) }
	batch := func(items ...string) string { return "[" + strings.Join(items, ",") + "]" }
	many := func(n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = valid("e" + strconv.Itoa(i))
		}
		return batch(items...)
	}
	type problem struct {
		index int
		field string
	}
	tests := []struct {
		name   string
		body   string
		header string
		lim    events.Limits
		n      int       // events on success
		want   []problem // nil means success
		reason string
	}{
		{name: "two valid", body: batch(valid("a"), ro()), n: 2},
		{name: "one element", body: batch(valid("a")), n: 1},
		{name: "spaces around", body: " \n[ " + valid("a") + " ]\n", n: 1},
		{name: "empty", body: `[]`, want: []problem{{0, ""}}, reason: "at least one event"},
		{name: "empty with spaces", body: `[ ]`, want: []problem{{0, ""}}},
		{name: "mixed valid and invalid", body: batch(valid("a"), scPatch(`{"firstName":""}`), ro("id", `"c"`), ro("id", `"d"`, "target", `"x"`)),
			want: []problem{{1, "patch.firstName"}, {3, "target"}}},
		{name: "several problems per event sorted", body: batch(valid("a"), sc("id", `"b"`, "zz", `1`, "contact_id", `"x"`)),
			want: []problem{{1, "contact_id"}, {1, "zz"}}},
		{name: "duplicate ids", body: batch(valid("a"), valid("b"), valid("a"), valid("b")),
			want: []problem{{2, "id"}, {3, "id"}}, reason: "event 0"},
		// An event whose id already has a problem is not also told that
		// its id repeats; any other problem does not hide a repeat.
		{name: "repeated id beside another problem", body: batch(valid("a"), sc("id", `"a"`, "zz", `1`)),
			want: []problem{{1, "id"}, {1, "zz"}}, reason: "repeats the id of event 0"},
		{name: "invalid id repeated", body: batch(sc("id", `"a b"`), sc("id", `"a b"`)),
			want: []problem{{0, "id"}, {1, "id"}}, reason: "printable ASCII"},
		{name: "same id different targets", body: batch(valid("a"), ro("id", `"a"`)), want: []problem{{1, "id"}}},
		{name: "element needs own id despite header", body: batch(sc("id", "-")), header: "hdr", want: []problem{{0, "id"}}},
		{name: "header ignored for arrays", body: batch(valid("a")), header: "other", n: 1},
		{name: "at custom limit", body: many(3), lim: events.Limits{MaxBatch: 3}, n: 3},
		{name: "over custom limit", body: many(3), lim: events.Limits{MaxBatch: 2}, want: []problem{{0, ""}}, reason: "limit is 2"},
		{name: "at default limit", body: many(1000), n: 1000},
		{name: "over default limit", body: many(1001), want: []problem{{0, ""}}, reason: "limit is 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, isArray, err := events.DecodeRequest([]byte(tc.body), tc.header, tc.lim)
			if !isArray {
				t.Fatal("isArray = false")
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("DecodeRequest: %v", err)
				}
				if len(evs) != tc.n {
					t.Fatalf("got %d events, want %d", len(evs), tc.n)
				}
				return
			}
			var ve *events.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error = %v, want *ValidationError", err)
			}
			got := make([]problem, len(ve.Errors))
			for i, f := range ve.Errors {
				got[i] = problem{f.Index, f.Field}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("problems = %v, want %v (%v)", got, tc.want, ve)
			}
			if tc.reason != "" && !strings.Contains(ve.Errors[0].Reason, tc.reason) {
				t.Fatalf("reason %q does not mention %q", ve.Errors[0].Reason, tc.reason)
			}
		})
	}
}

func TestCanonicalContactID(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"skipcall upper case", sc("contact_id", jstr(uuidUpper)), uuidLower},
		{"skipcall mixed case", sc("contact_id", `"550e8400-E29B-41d4-a716-446655440000"`), uuidLower},
		{"skipcall lower case", sc(), uuidLower},
		{"skipcall upper case A only", sc("contact_id", `"550e8400-e29b-41d4-A716-446655440000"`), uuidLower},
		{"skipcall upper case F only", sc("contact_id", `"550e8400-e29b-41d4-a716-44665544000F"`), "550e8400-e29b-41d4-a716-44665544000f"},
		{"revyops number", ro("contact_id", `42`), "42"},
		{"revyops string", ro("contact_id", `"42"`), "42"},
		{"revyops leading zeros", ro("contact_id", `"00042"`), "42"},
		{"revyops max", ro("contact_id", `9223372036854775807`), "9223372036854775807"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, _, err := events.DecodeRequest([]byte(tc.body), "", events.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if evs[0].ContactID != tc.want {
				t.Fatalf("ContactID = %q, want %q", evs[0].ContactID, tc.want)
			}
		})
	}
}

func TestEventValidate(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	good := func() events.Event {
		return events.Event{ID: "e1", Target: events.TargetSkipcall, ContactID: uuidUpper, OccurredAt: at, Patch: []byte(`{"firstName":"A"}`)}
	}
	tests := []struct {
		name   string
		mutate func(*events.Event)
		want   []string
		cid    string
	}{
		{name: "valid canonicalises", mutate: func(*events.Event) {}, cid: uuidLower},
		{name: "revyops canonicalises", mutate: func(e *events.Event) {
			e.Target, e.ContactID, e.Patch, e.Structure = events.TargetRevyOps, "007", []byte(` {"email":"a"} `), "NESTED"
		}, cid: "7"},
		{name: "zero value", mutate: func(e *events.Event) { *e = events.Event{} }, want: []string{"contact_id", "id", "occurred_at", "patch", "target"}},
		{name: "invalid contact id kept", mutate: func(e *events.Event) { e.ContactID = "{" + uuidLower + "}" }, want: []string{"contact_id"}, cid: "{" + uuidLower + "}"},
		{name: "patch not JSON", mutate: func(e *events.Event) { e.Patch = []byte(`{"firstName":`) }, want: []string{"patch"}},
		{name: "patch not UTF-8", mutate: func(e *events.Event) { e.Patch = []byte("{\"firstName\":\"\xff\"}") }, want: []string{"patch"}},
		{name: "patch lone surrogate", mutate: func(e *events.Event) { e.Patch = []byte(`{"firstName":"\udfff"}`) }, want: []string{"patch"}},
		{name: "patch problem", mutate: func(e *events.Event) { e.Patch = []byte(`{"firstName":1}`) }, want: []string{"patch.firstName"}},
		{name: "structure for skipcall", mutate: func(e *events.Event) { e.Structure = "FLAT" }, want: []string{"structure"}},
		{name: "unknown target", mutate: func(e *events.Event) { e.Target = "x" }, want: []string{"target"}, cid: uuidUpper},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := good()
			tc.mutate(&e)
			errs := e.Validate()
			got := fields(errs)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Validate() fields = %q, want %q (%v)", got, tc.want, errs)
			}
			if tc.cid != "" && e.ContactID != tc.cid {
				t.Fatalf("ContactID = %q, want %q", e.ContactID, tc.cid)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		malformed bool
		invalid   bool
	}{
		{name: "valid", data: sc()},
		{name: "not JSON", data: `{"id":`, malformed: true, invalid: true},
		{name: "array", data: "[" + sc() + "]", malformed: true, invalid: true},
		{name: "invalid UTF-8", data: "{\"id\":\"\xff\"}", malformed: true, invalid: true},
		{name: "missing id", data: sc("id", "-"), invalid: true},
		{name: "unknown field", data: sc("extra", `1`), invalid: true},
		{name: "bad patch", data: scPatch(`{"phoneNumbers":["1"]}`), invalid: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := events.Decode([]byte(tc.data))
			if got := errors.Is(err, events.ErrMalformed); got != tc.malformed {
				t.Fatalf("Decode error %v: Is(ErrMalformed) = %v", err, got)
			}
			if got := errors.Is(err, events.ErrInvalid); got != tc.invalid {
				t.Fatalf("Decode error %v: Is(ErrInvalid) = %v", err, got)
			}
			if err == nil && e.ID == "" {
				t.Fatal("empty event without error")
			}
			var ve *events.ValidationError
			if tc.invalid && !tc.malformed && !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *ValidationError", err)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		subj, dlq string
	}{
		{"skipcall", sc("contact_id", jstr(uuidUpper)), "contacts.patch.skipcall." + uuidLower, "contacts.dlq.skipcall." + uuidLower},
		{"revyops", ro("contact_id", `"0042"`), "contacts.patch.revyops.42", "contacts.dlq.revyops.42"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, _, err := events.DecodeRequest([]byte(tc.body), "", events.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := evs[0].Subject("contacts"); got != tc.subj {
				t.Errorf("Subject = %q, want %q", got, tc.subj)
			}
			if got := evs[0].DLQSubject("contacts"); got != tc.dlq {
				t.Errorf("DLQSubject = %q, want %q", got, tc.dlq)
			}
			if got := string(evs[0].AppendSubject([]byte("x"), "contacts")); got != "x"+tc.subj {
				t.Errorf("AppendSubject = %q, want %q", got, "x"+tc.subj)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	tests := []struct {
		name    string
		ev      events.Event
		want    string
		wantErr bool
	}{
		{
			name: "compact without HTML escaping",
			ev: events.Event{ID: "e1", Target: events.TargetRevyOps, ContactID: "7",
				OccurredAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), Patch: []byte(`{ "first_name" : "<A&B>" }`), Structure: "FLAT"},
			want: `{"id":"e1","target":"revyops","contact_id":"7","occurred_at":"2024-05-01T12:00:00Z","patch":{"first_name":"<A&B>"},"structure":"FLAT"}`,
		},
		{
			name:    "patch not JSON",
			ev:      events.Event{ID: "e1", OccurredAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), Patch: []byte(`{`)},
			wantErr: true,
		},
		{
			name:    "year out of range",
			ev:      events.Event{ID: "e1", OccurredAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Patch: []byte(`{}`)},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.ev.Marshal()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Marshal error = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && string(got) != tc.want {
				t.Fatalf("Marshal = %s\nwant      %s", got, tc.want)
			}
			if err == nil && len(got) > tc.ev.MarshalSize() {
				t.Errorf("Marshal wrote %d bytes, MarshalSize says %d", len(got), tc.ev.MarshalSize())
			}
			// Append writes the same after what buf holds, or leaves buf
			// as it was.
			buf := []byte("prefix")
			out, err := tc.ev.Append(buf[:len(buf):len(buf)])
			if (err != nil) != tc.wantErr {
				t.Fatalf("Append error = %v, wantErr %v", err, tc.wantErr)
			}
			want := "prefix" + tc.want
			if tc.wantErr {
				want = "prefix"
			}
			if string(out) != want {
				t.Fatalf("Append = %s\nwant     %s", out, want)
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		errs []events.FieldError
		want string
	}{
		{"one", []events.FieldError{{Index: 0, Field: "id", Reason: "is required"}}, "invalid event: [0] id: is required"},
		{"batch", []events.FieldError{{Index: 0, Reason: "batch must hold at least one event"}}, "invalid event: [0] batch must hold at least one event"},
		{"truncated", slices.Repeat([]events.FieldError{{Index: 1, Field: "id", Reason: "x"}}, 12), "; and 2 more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := error(&events.ValidationError{Errors: tc.errs})
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Error() = %q, want it to contain %q", err, tc.want)
			}
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatal("not Is(ErrInvalid)")
			}
		})
	}
}
