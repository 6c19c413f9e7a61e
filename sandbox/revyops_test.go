package sandbox_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/processor/openapi"
	"github.com/patchbay/patchbay/sandbox"
)

const revKey = "rev-key"

var revAuth = map[string]string{"X-API-Key": revKey}

func newRevyOps(t *testing.T, cfg sandbox.RevyOpsConfig) (*sandbox.RevyOps, *httptest.Server) {
	t.Helper()
	if cfg.APIKeys == nil {
		cfg.APIKeys = []string{revKey}
	}
	s, err := sandbox.NewRevyOps(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func lastRequest(t *testing.T, rs []sandbox.Request) sandbox.Request {
	t.Helper()
	if len(rs) == 0 {
		t.Fatal("no request recorded")
	}
	return rs[len(rs)-1]
}

func TestRevyOpsPatchAppliesAndGetShows(t *testing.T) {
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
	v := newResponseValidator(t, openapi.LoadRevyOps)
	s.PutContact(42, map[string]any{"first_name": "Old", "last_name": "Name", "contact_custom_fields": map[string]any{"size": "10"}})

	r := call(t, srv, http.MethodPatch, "/public/v2/contacts/42?structure=FLAT", revAuth,
		`{"first_name":"Grace","company_id":"Acme.com","contact_status":"lead","contact_custom_fields":[{"field_name":"tier","field_value":"gold"}]}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	v.check(t, r)
	if r.body["first_name"] != "Grace" || r.body["last_name"] != "Name" {
		t.Errorf("names = %v %v", r.body["first_name"], r.body["last_name"])
	}
	if got, want := r.body["company_id"], float64(sandbox.DomainCompanyID("acme.com")); got != want {
		t.Errorf("company_id = %v, want %v (resolved from the domain)", got, want)
	}
	if fmt.Sprint(r.body["contact_custom_fields"]) != "map[size:10 tier:gold]" {
		t.Errorf("FLAT custom fields = %v", r.body["contact_custom_fields"])
	}
	if r.body["status_changed_at"] == nil {
		t.Error("status_changed_at not set by a contact_status change")
	}
	if n := s.PatchCount(42); n != 1 {
		t.Errorf("PatchCount = %d, want 1", n)
	}

	g := call(t, srv, http.MethodGet, "/public/v2/contacts/42", revAuth, "")
	if g.status != http.StatusOK || g.body["first_name"] != "Grace" {
		t.Fatalf("GET: %d %s", g.status, g.raw)
	}
	c, ok := s.Contact(42)
	if !ok || c["first_name"] != "Grace" || c["contact_status"] != "lead" {
		t.Fatalf("Contact(42) = %v, %v", c, ok)
	}
	if rq := lastRequest(t, s.Requests()); rq.Method != http.MethodGet || rq.Status != http.StatusOK || rq.SpecErr != "" {
		t.Errorf("recorded %+v", rq)
	}
}

func TestRevyOpsFlatAndNested(t *testing.T) {
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
	v := newResponseValidator(t, openapi.LoadRevyOps)
	s.PutContact(7, map[string]any{"first_name": "A", "last_name": "B", "contact_custom_fields": []any{
		map[string]any{"field_name": "tier", "field_value": "gold"},
		map[string]any{"field_name": "gone", "field_value": "x"},
	}})
	body := `{"contact_custom_fields":[{"field_name":"tier","field_value":"silver"},{"field_name":"gone","field_value":null},{"field_name":"new","field_value":"n"}]}`
	for _, tc := range []struct {
		query string
		want  string
	}{
		{"", "[tier=silver new=n]"},
		{"?structure=NESTED", "[tier=silver new=n]"},
		{"?structure=FLAT", "map[new:n tier:silver]"},
	} {
		t.Run("structure"+tc.query, func(t *testing.T) {
			r := call(t, srv, http.MethodPatch, "/public/v2/contacts/7"+tc.query, revAuth, body)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.raw)
			}
			v.check(t, r)
			got := r.body["contact_custom_fields"]
			if list, ok := got.([]any); ok {
				var parts []string
				for _, it := range list {
					f := it.(map[string]any)
					if f["id"] == nil || f["updated_time"] == nil {
						t.Errorf("NESTED item without id/updated_time: %v", f)
					}
					parts = append(parts, fmt.Sprintf("%v=%v", f["field_name"], f["field_value"]))
				}
				got = "[" + strings.Join(parts, " ") + "]"
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("contact_custom_fields = %v, want %s", got, tc.want)
			}
		})
	}
}

func TestRevyOpsRejectsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, path, body string
	}{
		{"wrong type", "/public/v2/contacts/1", `{"first_name":5}`},
		{"company_id boolean", "/public/v2/contacts/1", `{"company_id":true}`},
		{"company_id fraction", "/public/v2/contacts/1", `{"company_id":1.5}`},
		{"company_id not a domain", "/public/v2/contacts/1", `{"company_id":"not a domain"}`},
		{"company_id bare word", "/public/v2/contacts/1", `{"company_id":"acme"}`},
		{"unknown field", "/public/v2/contacts/1", `{"first_name":"A","nickname":"x"}`},
		{"unknown nested field", "/public/v2/contacts/1", `{"contact_custom_fields":[{"field_name":"a","field_value":"b","colour":"red"}]}`},
		{"custom field without name", "/public/v2/contacts/1", `{"contact_custom_fields":[{"field_value":"b"}]}`},
		{"custom field value too long", "/public/v2/contacts/1", `{"contact_custom_fields":[{"field_name":"a","field_value":"` + strings.Repeat("x", 2501) + `"}]}`},
		{"custom fields not a list", "/public/v2/contacts/1", `{"contact_custom_fields":{"a":"b"}}`},
		{"bad structure", "/public/v2/contacts/1?structure=WIDE", `{"first_name":"A"}`},
		// The router matches any path segment; the schema's integer
		// contact_id then fails validation: 400, not 404.
		{"non-integer id", "/public/v2/contacts/abc", `{"first_name":"A"}`},
		{"malformed JSON", "/public/v2/contacts/1", `{"first_name":`},
		{"array body", "/public/v2/contacts/1", `[{"first_name":"A"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
			s.PutContact(1, map[string]any{"first_name": "Keep", "last_name": "Me"})
			r := call(t, srv, http.MethodPatch, tc.path, revAuth, tc.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.status, r.raw)
			}
			if d, _ := r.body["detail"].(string); d == "" {
				t.Errorf("no detail in %s", r.raw)
			}
			if rq := lastRequest(t, s.Requests()); rq.SpecErr == "" || rq.Status != http.StatusBadRequest {
				t.Errorf("recorded status %d SpecErr %q", rq.Status, rq.SpecErr)
			}
			if c, _ := s.Contact(1); c["first_name"] != "Keep" || s.PatchCount(1) != 0 {
				t.Errorf("state changed: %v", c)
			}
		})
	}
}

func TestRevyOpsAuth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    sandbox.RevyOpsConfig
		header map[string]string
		want   int
	}{
		{"no key", sandbox.RevyOpsConfig{}, nil, http.StatusForbidden},
		{"wrong key", sandbox.RevyOpsConfig{}, map[string]string{"X-API-Key": "nope"}, http.StatusForbidden},
		{"right key", sandbox.RevyOpsConfig{}, revAuth, http.StatusOK},
		{"key in the wrong header", sandbox.RevyOpsConfig{APIKeyHeader: "Authorization"}, revAuth, http.StatusForbidden},
		{"custom header", sandbox.RevyOpsConfig{APIKeyHeader: "Authorization"}, map[string]string{"Authorization": revKey}, http.StatusOK},
		{"any key accepted", sandbox.RevyOpsConfig{APIKeys: []string{}}, map[string]string{"X-API-Key": "whatever"}, http.StatusOK},
		{"any key but not none", sandbox.RevyOpsConfig{APIKeys: []string{}}, nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newRevyOps(t, tc.cfg)
			s.PutContact(1, map[string]any{"first_name": "A", "last_name": "B"})
			r := call(t, srv, http.MethodPatch, "/public/v2/contacts/1", tc.header, `{"first_name":"C"}`)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.raw)
			}
			if tc.want == http.StatusForbidden {
				if r.body["detail"] != "Invalid API key." {
					t.Errorf("body %s", r.raw)
				}
				if c, _ := s.Contact(1); c["first_name"] != "A" {
					t.Error("state changed")
				}
			}
		})
	}
}

func TestRevyOpsUnknownContact(t *testing.T) {
	v := newResponseValidator(t, openapi.LoadRevyOps)
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
	r := call(t, srv, http.MethodPatch, "/public/v2/contacts/9", revAuth, `{"first_name":"A"}`)
	if r.status != http.StatusNotFound || r.body["detail"] == nil {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if _, ok := s.Contact(9); ok {
		t.Fatal("contact created without AutoCreate")
	}
	if g := call(t, srv, http.MethodGet, "/public/v2/contacts/9", revAuth, ""); g.status != http.StatusNotFound {
		t.Fatalf("GET status %d", g.status)
	}

	s, srv = newRevyOps(t, sandbox.RevyOpsConfig{AutoCreate: true})
	r = call(t, srv, http.MethodPatch, "/public/v2/contacts/9", revAuth, `{"first_name":"A"}`)
	if r.status != http.StatusOK {
		t.Fatalf("AutoCreate: status %d: %s", r.status, r.raw)
	}
	v.check(t, r)
	if c, ok := s.Contact(9); !ok || c["first_name"] != "A" {
		t.Fatalf("AutoCreate: %v %v", c, ok)
	}
}

func TestRevyOpsConflict(t *testing.T) {
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
	s.PutContact(1, map[string]any{"first_name": "A", "last_name": "A", "email": "a@x.com", "linkedin_url": "https://linkedin.com/in/a"})
	s.PutContact(2, map[string]any{"first_name": "B", "last_name": "B"})
	steps := []struct {
		name string
		id   int
		body string
		want int
	}{
		{"email taken", 2, `{"email":"a@x.com"}`, http.StatusConflict},
		{"email taken, other case", 2, `{"email":"A@X.com"}`, http.StatusConflict},
		{"linkedin taken", 2, `{"linkedin_url":"https://linkedin.com/in/a"}`, http.StatusConflict},
		{"own email again", 1, `{"email":"a@x.com"}`, http.StatusOK},
		{"owner moves away", 1, `{"email":"a2@x.com","linkedin_url":"https://linkedin.com/in/a2"}`, http.StatusOK},
		{"email now free", 2, `{"email":"a@x.com","linkedin_url":"https://linkedin.com/in/a"}`, http.StatusOK},
		{"old owner cannot take it back", 1, `{"email":"a@x.com"}`, http.StatusConflict},
	}
	for _, st := range steps {
		r := call(t, srv, http.MethodPatch, fmt.Sprintf("/public/v2/contacts/%d", st.id), revAuth, st.body)
		if r.status != st.want {
			t.Fatalf("%s: status %d, want %d: %s", st.name, r.status, st.want, r.raw)
		}
		if st.want == http.StatusConflict && r.body["detail"] == nil {
			t.Fatalf("%s: body %s", st.name, r.raw)
		}
	}
	if c, _ := s.Contact(2); c["email"] != "a@x.com" {
		t.Fatalf("contact 2 email = %v", c["email"])
	}
}

func TestRevyOpsCompanyOwner(t *testing.T) {
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
	s.PutContact(1, map[string]any{"first_name": "A", "last_name": "B", "company_id": 5})
	s.SetCompanyOwner(77, false)
	s.SetCompanyOwner(sandbox.DomainCompanyID("rival.com"), false)
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"company_id":77}`, http.StatusUnauthorized},
		{`{"company_id":"rival.com"}`, http.StatusUnauthorized},
		{`{"company_id":"RIVAL.com"}`, http.StatusUnauthorized},
		{`{"company_id":78}`, http.StatusOK},
		{`{"company_id":null}`, http.StatusOK},
	} {
		r := call(t, srv, http.MethodPatch, "/public/v2/contacts/1", revAuth, tc.body)
		if r.status != tc.want {
			t.Fatalf("%s: status %d, want %d: %s", tc.body, r.status, tc.want, r.raw)
		}
		if tc.want == http.StatusUnauthorized && r.body["detail"] != "Company does not belong to this client." {
			t.Fatalf("%s: body %s", tc.body, r.raw)
		}
	}
	if c, _ := s.Contact(1); c["company_id"] != nil {
		t.Fatalf("company_id not cleared: %v", c["company_id"])
	}
	s.SetCompanyOwner(77, true)
	if r := call(t, srv, http.MethodPatch, "/public/v2/contacts/1", revAuth, `{"company_id":77}`); r.status != http.StatusOK {
		t.Fatalf("after SetCompanyOwner(77, true): %d", r.status)
	}
}

func TestRevyOpsRoutes(t *testing.T) {
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
	s.PutContact(1, map[string]any{"first_name": "A", "last_name": "B"})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPut, "/public/v2/contacts/1", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/public/v2/contacts/1", http.StatusMethodNotAllowed},
		{http.MethodPatch, "/public/v2/contacts/", http.StatusNotFound},
		{http.MethodPatch, "/public/v2/contacts/1/x", http.StatusNotFound},
		{http.MethodPatch, "/v1/contacts/1", http.StatusNotFound},
		{http.MethodGet, "/public/v2/contacts/abc", http.StatusNotFound},
		{http.MethodGet, "/public/v2/contacts/1?structure=WIDE", http.StatusBadRequest},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := call(t, srv, tc.method, tc.path, revAuth, "")
			if r.status != tc.want || r.body["detail"] == nil {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.raw)
			}
			if tc.want == http.StatusMethodNotAllowed && r.header.Get("Allow") != "GET, PATCH" {
				t.Errorf("Allow = %q", r.header.Get("Allow"))
			}
		})
	}
}

func TestRevyOpsFaults(t *testing.T) {
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
	s.PutContact(1, map[string]any{"first_name": "A", "last_name": "B"})
	s.FailNext(2, http.StatusInternalServerError)
	// Auth comes first: a bad key is answered 403 and leaves the failures pending.
	if r := call(t, srv, http.MethodPatch, "/public/v2/contacts/1", nil, `{"first_name":"C"}`); r.status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", r.status)
	}
	// GET is not a PATCH: no fault.
	if r := call(t, srv, http.MethodGet, "/public/v2/contacts/1", revAuth, ""); r.status != http.StatusOK {
		t.Fatalf("GET status %d", r.status)
	}
	for i := range 2 {
		r := call(t, srv, http.MethodPatch, "/public/v2/contacts/1", revAuth, `{"first_name":"C"}`)
		if r.status != http.StatusInternalServerError || r.body["detail"] == nil {
			t.Fatalf("forced failure %d: %d %s", i, r.status, r.raw)
		}
	}
	if c, _ := s.Contact(1); c["first_name"] != "A" {
		t.Fatal("a forced failure changed state")
	}
	if r := call(t, srv, http.MethodPatch, "/public/v2/contacts/1", revAuth, `{"first_name":"C"}`); r.status != http.StatusOK {
		t.Fatalf("after the failures: %d %s", r.status, r.raw)
	}
	// Faults come before validation: an invalid body gets the forced status.
	s.SetFaults(sandbox.Faults{ErrorRate: 1, ErrorStatus: http.StatusConflict})
	if r := call(t, srv, http.MethodPatch, "/public/v2/contacts/1", revAuth, `{"first_name":5}`); r.status != http.StatusConflict {
		t.Fatalf("ErrorRate 1: %d", r.status)
	}
	if n := s.PatchCount(1); n != 1 {
		t.Fatalf("PatchCount = %d, want 1", n)
	}
}
