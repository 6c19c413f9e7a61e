package sandbox

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/patchbay/patchbay/processor/openapi"
)

// revyOpsPrefix is the path of a RevyOps contact, followed by its integer id.
const revyOpsPrefix = "/public/v2/contacts/"

// domainPattern is what the sandbox accepts as a company domain in
// company_id: dot-separated DNS labels ending in an alphabetic TLD.
var domainPattern = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

// maxFieldValue is the length limit of a custom field value; the seed states
// it on the response schema only, and a longer value could not be answered
// validly, so the sandbox rejects it in requests.
const maxFieldValue = 2500

// RevyOpsConfig configures a RevyOps sandbox.
type RevyOpsConfig struct {
	APIKeyHeader string           // default "X-API-Key"
	APIKeys      []string         // accepted keys; empty = any non-empty value accepted
	AutoCreate   bool             // PATCH of an unknown id creates it (dev mode); otherwise 404
	Now          func() time.Time // optional clock
}

// RevyOps is an in-process fake of RevyOps' contact API:
//
//	PATCH /public/v2/contacts/{contact_id}?structure=FLAT|NESTED
//	GET   /public/v2/contacts/{contact_id}?structure=FLAT|NESTED   (sandbox convenience)
//
// The key is read from the configured header (default X-API-Key). Status
// codes follow the seed: 400 invalid data, 401 company does not belong to
// this client, 403 missing or invalid key, 404 unknown contact, 409 email or
// LinkedIn URL taken by another contact, 500.
//
// Error bodies are {"detail": "..."}: the seed documents none, and RevyOps'
// API looks like Django REST framework (operationId "Modify contact (v2)",
// PatchedContactPatchRequest), whose errors have that shape. This is a guess.
//
// Use NewRevyOps; a RevyOps is safe for concurrent use.
type RevyOps struct {
	*core
	header     string
	keys       map[string]bool
	autoCreate bool

	mu       sync.Mutex
	contacts map[int64]*revyContact
	email    map[string]int64 // lower-cased email -> contact id
	linkedin map[string]int64 // linkedin_url -> contact id
	notOurs  map[int64]bool   // companies that belong to another client
	fieldID  int64            // last custom field id handed out
}

type revyContact struct {
	id      int64
	fields  map[string]any // text and read-only response fields, by API name
	company *int64
	domain  string // the domain company_id was resolved from, if any
	custom  []revyField
	updated time.Time
}

type revyField struct {
	id      int64
	name    string
	value   string
	updated time.Time
}

// NewRevyOps returns a RevyOps sandbox with no contacts. It returns an error
// if the seed document cannot be loaded or the config is invalid.
func NewRevyOps(cfg RevyOpsConfig) (*RevyOps, error) {
	if cfg.APIKeyHeader == "" {
		cfg.APIKeyHeader = "X-API-Key"
	}
	keys := make(map[string]bool, len(cfg.APIKeys))
	for _, k := range cfg.APIKeys {
		if k == "" {
			return nil, errors.New("sandbox: revyops: empty API key in APIKeys")
		}
		keys[k] = true
	}
	doc, err := openapi.LoadRevyOps(context.Background())
	if err != nil {
		return nil, fmt.Errorf("sandbox: revyops: %w", err)
	}
	c, err := newCore(doc, openapi.RevyOpsRequestSchema, cfg.Now, nil, revyOpsError)
	if err != nil {
		return nil, fmt.Errorf("sandbox: revyops: %w", err)
	}
	c.contactOf = revyOpsContact
	return &RevyOps{
		core:       c,
		header:     cfg.APIKeyHeader,
		keys:       keys,
		autoCreate: cfg.AutoCreate,
		contacts:   make(map[int64]*revyContact),
		email:      make(map[string]int64),
		linkedin:   make(map[string]int64),
		notOurs:    make(map[int64]bool),
	}, nil
}

// revyOpsError writes {"detail": msg}.
func revyOpsError(x *exchange, status int, msg string) {
	if msg == "" {
		msg = revyOpsMessage(status)
	}
	if status == http.StatusTooManyRequests {
		x.w.Header().Set("Retry-After", "1")
	}
	x.json(status, map[string]string{"detail": msg})
}

// revyOpsMessage is the detail of a forced failure, after the seed's status
// descriptions.
func revyOpsMessage(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "Invalid data has been provided."
	case http.StatusUnauthorized:
		return "Company does not belong to this client."
	case http.StatusForbidden:
		return "Invalid API key."
	case http.StatusNotFound:
		return "Not found."
	case http.StatusConflict:
		return "A contact with this email or LinkedIn URL already exists for this client."
	case http.StatusTooManyRequests:
		return "Request was throttled."
	case http.StatusInternalServerError:
		return "An unexpected error occurred on the server."
	}
	if t := http.StatusText(status); t != "" {
		return t + "."
	}
	return "Error."
}

// DomainCompanyID is the company id the RevyOps sandbox resolves a
// company_id domain to: a deterministic hash of the lower-cased domain, a
// positive integer below 2^31. Use it with SetCompanyOwner to make a domain
// belong to another client.
func DomainCompanyID(domain string) int64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(strings.ToLower(strings.TrimSpace(domain))))
	return int64(h.Sum32()&0x7fffffff) | 1<<30 // never collides with small seeded ids
}

// ServeHTTP answers one request; see RevyOps for the routes.
func (s *RevyOps) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, s.handle)
}

func (s *RevyOps) handle(x *exchange) {
	rest, ok := strings.CutPrefix(x.r.URL.Path, revyOpsPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		revyOpsError(x, http.StatusNotFound, "Not found.")
		return
	}
	if key := x.r.Header.Get(s.header); key == "" || (len(s.keys) > 0 && !s.keys[key]) {
		revyOpsError(x, http.StatusForbidden, "Invalid API key.")
		return
	}
	if !allowMethods(x, revyOpsError) {
		return
	}
	if x.r.Method == http.MethodGet {
		s.get(x, rest)
		return
	}
	if st := s.fault(x.r.Context()); st == StatusClientClosed {
		x.status = st
		return
	} else if st != 0 {
		revyOpsError(x, st, "")
		return
	}
	patch, err := s.check(x)
	if err != nil {
		x.specErr = err.Error()
		revyOpsError(x, http.StatusBadRequest, "Invalid data has been provided: "+firstLine(err))
		return
	}
	if err := revyOpsRules(patch); err != nil {
		x.specErr = err.Error()
		revyOpsError(x, http.StatusBadRequest, "Invalid data has been provided: "+err.Error())
		return
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil { // validated as an integer, so only out of range
		revyOpsError(x, http.StatusNotFound, "Not found.")
		return
	}
	structure := x.r.URL.Query().Get("structure")
	s.late(x)
	status, body, msg := s.apply(id, patch, structure)
	if status != http.StatusOK {
		revyOpsError(x, status, msg)
		return
	}
	s.countPatch(strconv.FormatInt(id, 10))
	s.applied(x)
	x.json(http.StatusOK, body)
}

func (s *RevyOps) get(x *exchange, rest string) {
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		revyOpsError(x, http.StatusNotFound, "Not found.")
		return
	}
	structure := x.r.URL.Query().Get("structure")
	if structure != "" && structure != "FLAT" && structure != "NESTED" {
		revyOpsError(x, http.StatusBadRequest, `structure must be FLAT or NESTED.`)
		return
	}
	s.mu.Lock()
	c := s.contacts[id]
	var body map[string]any
	if c != nil {
		body = c.render(structure)
	}
	s.mu.Unlock()
	if c == nil {
		revyOpsError(x, http.StatusNotFound, "Not found.")
		return
	}
	x.json(http.StatusOK, body)
}

// revyOpsRules checks what the prose says and the schema cannot: company_id
// strings are domains; custom field values fit the response's maxLength.
func revyOpsRules(patch map[string]any) error {
	if d, ok := patch["company_id"].(string); ok && (len(d) > 253 || !domainPattern.MatchString(d)) {
		return fmt.Errorf("company_id: %q is neither an integer nor a domain", d)
	}
	if fs, ok := patch["contact_custom_fields"].([]any); ok {
		for i, f := range fs {
			if v, ok := f.(map[string]any)["field_value"].(string); ok && len([]rune(v)) > maxFieldValue {
				return fmt.Errorf("contact_custom_fields[%d].field_value: longer than %d characters", i, maxFieldValue)
			}
		}
	}
	return nil
}

// apply runs a validated PATCH and returns the status, the response body
// (on 200) or the error detail.
func (s *RevyOps) apply(id int64, patch map[string]any, structure string) (int, map[string]any, string) {
	company, clearCompany, _ := companyOf(patch)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.contacts[id]
	if c == nil && !s.autoCreate {
		return http.StatusNotFound, nil, "Not found."
	}
	if !clearCompany && company != nil && s.notOurs[*company] {
		return http.StatusUnauthorized, nil, "Company does not belong to this client."
	}
	if e, ok := patch["email"].(string); ok && e != "" {
		if other, taken := s.email[strings.ToLower(e)]; taken && other != id {
			return http.StatusConflict, nil, "A contact with this email already exists for this client."
		}
	}
	if u, ok := patch["linkedin_url"].(string); ok && u != "" {
		if other, taken := s.linkedin[u]; taken && other != id {
			return http.StatusConflict, nil, "A contact with this LinkedIn URL already exists for this client."
		}
	}
	now := s.now()
	if c == nil {
		c = newRevyContact(id, now)
		s.contacts[id] = c
	}
	s.update(c, patch, now)
	return http.StatusOK, c.render(structure), ""
}

// companyOf reads company_id from a patch: an id, a domain resolved to an
// id, or null (clear).
func companyOf(patch map[string]any) (id *int64, clear bool, domain string) {
	v, ok := patch["company_id"]
	if !ok {
		return nil, false, ""
	}
	switch v := v.(type) {
	case nil:
		return nil, true, ""
	case float64:
		n := int64(v)
		return &n, false, ""
	case string:
		d := strings.ToLower(strings.TrimSpace(v))
		n := DomainCompanyID(d)
		return &n, false, d
	}
	return nil, false, ""
}

func newRevyContact(id int64, now time.Time) *revyContact {
	return &revyContact{id: id, updated: now, fields: map[string]any{
		// Writable text fields: "" until set.
		"email": "", "linkedin_url": "", "first_name": "", "last_name": "", "origin": "", "contact_status": "",
		// Required read-only fields: null until the provider's own activity sets them.
		"first_campaign_email_sent": nil, "last_campaign_email_sent": nil, "last_reply_received": nil,
		"previous_status": nil, "status_changed_at": nil,
	}}
}

// update applies patch (decoded JSON) to c and keeps the indexes current.
// The caller holds s.mu.
func (s *RevyOps) update(c *revyContact, patch map[string]any, now time.Time) {
	for k, v := range patch {
		switch k {
		case "id", "updated_time":
		case "company_id":
			id, clear, domain := companyOf(patch)
			if clear || id != nil {
				c.company, c.domain = id, domain
			}
		case "contact_custom_fields":
			s.upsertFields(c, v, now)
		case "email":
			e, _ := v.(string)
			if old, _ := c.fields["email"].(string); old != "" && s.email[strings.ToLower(old)] == c.id {
				delete(s.email, strings.ToLower(old))
			}
			if e != "" {
				s.email[strings.ToLower(e)] = c.id
			}
			c.fields[k] = e
		case "linkedin_url":
			u, _ := v.(string)
			if old, _ := c.fields["linkedin_url"].(string); old != "" && s.linkedin[old] == c.id {
				delete(s.linkedin, old)
			}
			if u != "" {
				s.linkedin[u] = c.id
			}
			c.fields[k] = u
		case "contact_status":
			st, _ := v.(string)
			if old, _ := c.fields[k].(string); old != st {
				if old != "" {
					c.fields["previous_status"] = old
				}
				c.fields["status_changed_at"] = timestamp(now)
			}
			c.fields[k] = st
		default:
			c.fields[k] = v
		}
	}
	c.updated = now
}

// upsertFields applies contact_custom_fields: upsert by field_name; a null
// (or absent) field_value removes the field. Both the API's list form and a
// FLAT-style object (PutContact convenience) are accepted.
func (s *RevyOps) upsertFields(c *revyContact, v any, now time.Time) {
	var items []map[string]any
	switch v := v.(type) {
	case []any:
		for _, it := range v {
			if m, ok := it.(map[string]any); ok {
				items = append(items, m)
			}
		}
	case map[string]any:
		for name, val := range v {
			items = append(items, map[string]any{"field_name": name, "field_value": val})
		}
	}
	for _, it := range items {
		name, _ := it["field_name"].(string)
		val, set := it["field_value"].(string)
		i := 0
		for i < len(c.custom) && c.custom[i].name != name {
			i++
		}
		switch {
		case !set && i < len(c.custom):
			c.custom = append(c.custom[:i], c.custom[i+1:]...)
		case !set:
		case i < len(c.custom):
			c.custom[i].value, c.custom[i].updated = val, now
		default:
			s.fieldID++
			c.custom = append(c.custom, revyField{id: s.fieldID, name: name, value: val, updated: now})
		}
	}
}

// render returns c as the API answers it; structure "FLAT" gives custom
// fields as an object, anything else the NESTED list. The result shares
// nothing with c.
func (c *revyContact) render(structure string) map[string]any {
	out := make(map[string]any, len(c.fields)+4)
	for k, v := range c.fields {
		out[k] = v
	}
	out["id"] = c.id
	out["updated_time"] = timestamp(c.updated)
	if c.company != nil {
		out["company_id"] = *c.company
	}
	if structure == "FLAT" {
		flat := make(map[string]any, len(c.custom))
		for _, f := range c.custom {
			flat[f.name] = f.value
		}
		out["contact_custom_fields"] = flat
	} else {
		nested := make([]any, 0, len(c.custom))
		for _, f := range c.custom {
			nested = append(nested, map[string]any{
				"id": f.id, "field_name": f.name, "field_value": f.value, "updated_time": timestamp(f.updated),
			})
		}
		out["contact_custom_fields"] = nested
	}
	return out
}

// PutContact seeds contact id, replacing any contact with that id. fields
// use the API's names (first_name, email, company_id as an integer or a
// domain, contact_custom_fields as the API's list or a {name: value}
// object, contact_status, read-only fields such as last_reply_received...);
// fields that cannot be encoded as JSON are ignored. No validation, ownership
// or duplicate check is made.
func (s *RevyOps) PutContact(id int64, fields map[string]any) {
	norm, err := normalize(fields)
	if err != nil {
		norm = map[string]any{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if old := s.contacts[id]; old != nil {
		s.update(old, map[string]any{"email": "", "linkedin_url": ""}, now) // drop index entries
	}
	c := newRevyContact(id, now)
	s.contacts[id] = c
	s.update(c, norm, now)
}

// Contact returns a copy of contact id as GET (NESTED) would answer it, and
// whether it exists.
func (s *RevyOps) Contact(id int64) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.contacts[id]
	if c == nil {
		return nil, false
	}
	return c.render("NESTED"), true
}

// SetCompanyOwner sets whether company companyID belongs to this client. By
// default every company does; PATCHes that set company_id to a company that
// does not (an id, or a domain resolving to it, see DomainCompanyID) are
// answered 401 "Company does not belong to this client.".
func (s *RevyOps) SetCompanyOwner(companyID int64, ours bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ours {
		delete(s.notOurs, companyID)
	} else {
		s.notOurs[companyID] = true
	}
}

// PatchCount returns how many PATCHes were applied to contact id (answered
// 200).
func (s *RevyOps) PatchCount(id int64) int {
	return s.patchCount(strconv.FormatInt(id, 10))
}
