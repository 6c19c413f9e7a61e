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

func jsonRequest(body string, hdr ...string) *sources.Request {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return &sources.Request{Method: "POST", Header: h, Body: []byte(body), Now: time.Now()}
}

func TestHubSpotBatchMaps(t *testing.T) {
	src := mustSource(t, loadTestSources(t), "hubspot")
	ms, err := src.Map(hubspotRequest(t), events.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// contact.creation (eventId 1004) is filtered out.
	if len(ms) != 3 {
		t.Fatalf("%d events, want 3", len(ms))
	}
	ids := map[string]string{"123": "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c", "456": "1c8f5d7b-2a3e-4f4b-8c9d-8e7f6a5b4c3d"}
	for i := range ms {
		ms[i].SetContactID(ids[ms[i].SourceContactID])
	}
	if err := src.Validate(ms, events.Limits{}); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		item                       int
		id, sourceContact, contact string
		occurred                   string
		patch                      string
	}{
		{0, "hubspot:1001", "123", ids["123"], "2026-11-25T10:00:00Z", `{"firstName":"Ada"}`},
		{1, "hubspot:1002", "123", ids["123"], "2026-11-25T10:00:01Z", `{"lastName":"Lovelace"}`},
		{2, "hubspot:1003", "456", ids["456"], "2026-11-25T10:00:02Z", `{"city":"London"}`},
	}
	for i, w := range want {
		m := ms[i]
		ev := m.Event
		if m.Item != w.item || ev.ID != w.id || m.SourceContactID != w.sourceContact || ev.ContactID != w.contact ||
			ev.Target != events.TargetSkipcall || ev.OccurredAt.Format(time.RFC3339) != w.occurred || string(ev.Patch) != w.patch {
			t.Errorf("event %d: item %d id %s source contact %s contact %s target %s at %s patch %s; want %+v",
				i, m.Item, ev.ID, m.SourceContactID, ev.ContactID, ev.Target, ev.OccurredAt.Format(time.RFC3339), ev.Patch, w)
		}
	}
}

// TestMappedEventsValidatedLikeNative: problems an expression's value causes
// are the events package's own, reported on the source field.
func TestMappedEventsValidatedLikeNative(t *testing.T) {
	src := mustSource(t, loadTestSources(t), "hubspot")
	long := strings.Repeat("x", 101)
	body := `[{"eventId":1,"occurredAt":1795600800000,"subscriptionType":"contact.propertyChange","objectId":1,"propertyName":"firstname","propertyValue":"Ada"},
	          {"eventId":2,"occurredAt":1795600800000,"subscriptionType":"contact.propertyChange","objectId":1,"propertyName":"firstname","propertyValue":"` + long + `"}]`
	ms, err := src.Map(jsonRequest(body), events.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		ms[i].SetContactID("0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c")
	}
	err = src.Validate(ms, events.Limits{})
	var ve *events.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 1 {
		t.Fatalf("got %v, want one problem", err)
	}
	// The native endpoint says the same about the same patch.
	native := events.Event{ID: "x", Target: events.TargetSkipcall, ContactID: "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c",
		OccurredAt: time.Now(), Patch: json.RawMessage(`{"firstName":"` + long + `"}`)}
	nat := native.Validate()
	fe := ve.Errors[0]
	if len(nat) != 1 || fe.Index != 1 || fe.Field != "propertyName, propertyValue" ||
		fe.Reason != nat[0].Field+": "+nat[0].Reason+" (map.patch)" {
		t.Fatalf("problem %+v; native says %+v", fe, nat)
	}
	for i := range ms {
		if ms[i].Event.ID != "" {
			t.Fatal("an event was set although the batch is invalid")
		}
	}
}

func TestMapErrorsNameSourceField(t *testing.T) {
	set := loadTestSources(t)
	cases := []struct {
		source, body string
		hdr          []string
		field        string
		reason       string
	}{
		{"hubspot", `[{"eventId":1,"occurredAt":1,"subscriptionType":"contact.propertyChange","propertyName":"email","propertyValue":"a@b.c"}]`,
			nil, "objectId", "no such key: objectId"},
		{"hubspot", `[{"occurredAt":1,"subscriptionType":"contact.propertyChange","objectId":1,"propertyName":"email","propertyValue":"a@b.c"}]`,
			nil, "eventId", "delivery id"},
		{"hubspot", `[{"eventId":1,"subscriptionType":"contact.creation","objectId":1}]`,
			nil, "propertyName, subscriptionType", "no item maps to an event"},
		{"hubspot", `[{"eventId":1,"occurredAt":"yesterday","subscriptionType":"contact.propertyChange","objectId":1,"propertyName":"email","propertyValue":"a@b.c"}]`,
			nil, "occurredAt", "occurred_at: must be an RFC 3339 timestamp"},
		{"crm", `{"contact":{"revyops_id":42,"first_name":"Grace"},"updated_at":"2026-11-25T10:00:00Z"}`,
			nil, "header X-Delivery-Id", "is required"},
		{"crm", `{"contact":{"revyops_id":-4,"first_name":"Grace"},"updated_at":"2026-11-25T10:00:00Z"}`,
			[]string{"X-Delivery-Id", "d1"}, "contact.revyops_id", "contact_id: must be a positive integer"},
		{"crm", `{"contact":{"revyops_id":4,"first_name":"Grace","company_domain":"not a domain"},"updated_at":"2026-11-25T10:00:00Z"}`,
			[]string{"X-Delivery-Id", "d1"}, "contact.company_domain, contact.first_name, contact.last_name", "patch.company_id"},
		{"crm", `[]`, []string{"X-Delivery-Id", "d1"}, "", "at least one item"},
	}
	for _, tc := range cases {
		t.Run(tc.source+" "+tc.reason, func(t *testing.T) {
			src := mustSource(t, set, tc.source)
			ms, err := src.Map(jsonRequest(tc.body, tc.hdr...), events.Limits{})
			if err == nil {
				for i := range ms {
					ms[i].Unmapped = src.LookupContacts()
				}
				err = src.Validate(ms, events.Limits{})
			}
			var ve *events.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a validation error", err)
			}
			fe := ve.Errors[0]
			if fe.Field != tc.field || !strings.Contains(fe.Reason, tc.reason) {
				t.Fatalf("got %+v, want field %q and a reason containing %q", ve.Errors, tc.field, tc.reason)
			}
		})
	}
}

func TestOptionalFieldsAndRevyOps(t *testing.T) {
	src := mustSource(t, loadTestSources(t), "crm")
	ms, err := src.Map(jsonRequest(`[{"contact":{"revyops_id":"0042","first_name":"Grace","company_domain":"acme.com"},"updated_at":"2026-11-25T10:00:00Z"},
		{"contact":{"revyops_id":7,"first_name":"Alan","last_name":"Turing"},"updated_at":"2026-11-25T11:00:00+01:00"}]`, "X-Delivery-Id", "d-9"), events.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Validate(ms, events.Limits{}); err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, m := range ms {
		b, _ := m.Event.Marshal()
		got = append(got, string(b))
	}
	want := []string{
		`{"id":"crm:d-9:0","target":"revyops","contact_id":"42","occurred_at":"2026-11-25T10:00:00Z","patch":{"company_id":"acme.com","first_name":"Grace"},"structure":"FLAT"}`,
		`{"id":"crm:d-9:1","target":"revyops","contact_id":"7","occurred_at":"2026-11-25T11:00:00+01:00","patch":{"first_name":"Alan","last_name":"Turing"},"structure":"FLAT"}`,
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestMapRefusesBadBodies(t *testing.T) {
	src := mustSource(t, loadTestSources(t), "crm")
	for _, body := range []string{``, `{`, `"x"`, `12`, "{\"a\":\"\xff\"}"} {
		_, err := src.Map(jsonRequest(body, "X-Delivery-Id", "d"), events.Limits{})
		if !errors.Is(err, events.ErrMalformed) {
			t.Errorf("%q: got %v, want malformed", body, err)
		}
	}
	r := jsonRequest(`{}`, "X-Delivery-Id", "d")
	r.Header.Set("Content-Type", "text/plain")
	if _, err := src.Map(r, events.Limits{}); !errors.Is(err, sources.ErrUnsupportedMedia) {
		t.Errorf("text/plain: got %v", err)
	}
	many := "[" + strings.Repeat(`{},`, 10) + `{}]`
	var ve *events.ValidationError
	if _, err := src.Map(jsonRequest(many, "X-Delivery-Id", "d"), events.Limits{MaxBatch: 10}); !errors.As(err, &ve) || !strings.Contains(ve.Errors[0].Reason, "limit is 10") {
		t.Errorf("11 items with a limit of 10: %v", err)
	}
}

func TestConfigErrorsNameSourceAndKey(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"sources:\n  a:\n    auth: {scheme: hmac-sha256, secrets: [{env: NOPE}]}\n    id: {header: X}\n    map: {target: skipcall, contact_id: item.id, occurred_at: item.t, patch: '{}'}\n",
			`source "a": auth.secrets[0]: environment variable NOPE is not set`},
		{"sources:\n  a:\n    auth: {scheme: hmac-sha256, secrets: [{env: BUS_TOKEN}]}\n    id: {header: X}\n    map: {target: skipcall, contact_id: item.id, occurred_at: item.t, patch: '{}'}\n",
			`source "a": auth.header: is required`},
		{"sources:\n  a:\n    auth: {scheme: bearer, secrets: [{env: BUS_TOKEN}]}\n    id: {header: X}\n    map: {target: skipcall, contact_id: item.id +, occurred_at: item.t, patch: '{}'}\n",
			`source "a": map.contact_id: expression "item.id +"`},
		{"sources:\n  a:\n    auth: {scheme: bearer, secrets: [{env: BUS_TOKEN}]}\n    id: {header: X}\n    map: {target: skipcall, contact_id: item.id, occurred_at: item.t, patch: '[1]'}\n",
			`source "a": map.patch: expression "[1]" has type list(int)`},
		{"sources:\n  a:\n    auth: {scheme: bearer, secrets: [{env: BUS_TOKEN}]}\n    id: {header: X}\n    map: {target: mailchimp, contact_id: item.id, occurred_at: item.t, patch: '{}'}\n",
			`source "a": map.target: must be revyops or skipcall`},
		{"sources:\n  a:\n    auth: {scheme: hubspot-v3, secrets: [{file: /nope}]}\n    id: {json: eventId}\n    map: {target: skipcall, contact_id: item.id, occurred_at: item.t, patch: '{}'}\n",
			`source "a": auth.public_url: is required`},
		{"sources:\n  a:\n    auth: {scheme: hubspot-v3, secrets: [{file: /nope}], public_url: x}\n    id: {json: eventId}\n    map: {target: skipcall, contact_id: item.id, occurred_at: item.t, patch: '{}'}\n",
			`source "a": auth.secrets[0]: cannot read file /nope`},
		{"sources:\n  a:\n    auth: {scheme: bearer, secrets: [{env: BUS_TOKEN}]}\n    map: {target: skipcall, contact_id: item.id, occurred_at: item.t, patch: '{}'}\n",
			`source "a": id: is required`},
		{"sources:\n  a:\n    auth: {}\n    format: cloudevents\n", `source "a": auth.scheme: is required`},
		{"sources:\n  Bad/Name:\n    auth: {scheme: none}\n    format: cloudevents\n", `source "Bad/Name": name:`},
		{"sources:\n  a:\n    auth: {scheme: none}\n    format: cloudevents\n    colour: blue\n", `field colour not found`},
		{"sources:\n  a:\n    auth: {scheme: standard-webhooks, secrets: [{env: BUS_TOKEN}]}\n    format: cloudevents\n", `source "a": auth.secrets[0]: not a Standard Webhooks secret`},
	}
	for _, tc := range cases {
		_, err := sources.Parse([]byte(tc.yaml), testEnv(nil))
		var ce *sources.ConfigError
		if !errors.As(err, &ce) || !errors.Is(err, sources.ErrConfig) {
			t.Errorf("%s: got %v, want a config error", tc.want, err)
			continue
		}
		found := false
		for _, p := range ce.Problems {
			found = found || strings.Contains(p, tc.want)
			if strings.Contains(p, busToken) || strings.Contains(p, swSecret) {
				t.Errorf("a problem reveals a secret: %s", p)
			}
		}
		if !found {
			t.Errorf("problems %q lack %q", ce.Problems, tc.want)
		}
	}
	// Every mistake is reported, one line each.
	_, err := sources.Parse([]byte("sources:\n  a:\n    auth: {scheme: nope}\n  b:\n    format: xml\n    auth: {scheme: none}\n"), testEnv(nil))
	var ce *sources.ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) < 3 {
		t.Fatalf("got %v, want every problem", err)
	}
}
