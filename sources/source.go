package sources

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/patchbay/patchbay/events"
)

// ErrUnsupportedMedia is wrapped when a request's Content-Type does not fit
// the source's format.
var ErrUnsupportedMedia = errors.New("unsupported media type")

// Source is one compiled source.
type Source struct {
	// Name is the source's name, the last segment of its URL.
	Name    string
	format  string
	auth    verifier
	id      idSpec
	lookup  bool
	mapping *mapping
	// authHeader is the header the source's authentication reads (lower
	// case; empty when the scheme names its own), withheld from mappings.
	authHeader string
}

// idSpec locates the delivery id.
type idSpec struct {
	header, path string
	ce           bool
}

// field names where the id comes from, for errors.
func (s idSpec) field() string {
	switch {
	case s.ce:
		return "id"
	case s.header != "":
		return "header " + s.header
	}
	return s.path
}

// Format returns json or cloudevents.
func (s *Source) Format() string { return s.format }

// Scheme returns the source's authentication scheme.
func (s *Source) Scheme() string { return s.auth.scheme() }

// LookupContacts reports whether the source's contact ids are looked up in
// the contact map.
func (s *Source) LookupContacts() bool { return s.lookup }

// Authenticate reports whether r carries valid credentials for s. It says
// nothing about which check failed.
func (s *Source) Authenticate(r *Request) bool { return s.auth.verify(r) }

// Mapped is one event a request maps to.
type Mapped struct {
	// Item is the index of the source item (in the array, or the batch of
	// CloudEvents) the event comes from.
	Item int
	// SourceContactID is the contact id as the source sent it; it is the
	// key of the contact map for a lookup source.
	SourceContactID string
	// Unmapped is set by the caller when a lookup found no provider id.
	Unmapped bool
	// Event is set by Validate.
	Event events.Event

	obj map[string]any
}

// Target returns the provider the event is for.
func (m *Mapped) Target() events.Target {
	t, _ := m.obj["target"].(string)
	if raw, ok := m.obj["target"].(json.RawMessage); ok {
		_ = json.Unmarshal(raw, &t)
	}
	return events.Target(t)
}

// SetContactID replaces the contact id with the provider's, found by lookup.
func (m *Mapped) SetContactID(id string) { m.obj["contact_id"] = id }

// placeholder contact ids stand in for an unmapped contact while the rest of
// the event is validated.
var placeholder = map[events.Target]string{
	events.TargetSkipcall: "00000000-0000-4000-8000-000000000000",
	events.TargetRevyOps:  "1",
}

// LetterData returns the stored form of an unmapped event: the validated
// event with the source's contact id, to be resolved at replay.
func (m *Mapped) LetterData() ([]byte, error) {
	ev := m.Event
	ev.ContactID = m.SourceContactID
	return ev.Marshal()
}

// Map reads the items of r's payload and maps each to an event draft; items
// the filter rejects are skipped. Contact ids are still the source's; call
// SetContactID or mark Unmapped, then Validate.
//
// Errors: one wrapping ErrUnsupportedMedia (wrong Content-Type), one
// wrapping events.ErrMalformed (not JSON, not an object or array of
// objects), or an *events.ValidationError whose Field names the source
// field (the item fields an expression reads, the id's header or path, or
// the CloudEvents attribute) and whose Index is the item's.
func (s *Source) Map(r *Request, lim events.Limits) ([]Mapped, error) {
	maxBatch := lim.MaxBatch
	if maxBatch <= 0 {
		maxBatch = events.DefaultMaxBatch
	}
	if s.format == FormatCloudEvents {
		ces, err := DecodeCloudEvents(r.Header, r.Body, maxBatch)
		if err != nil {
			return nil, err
		}
		return s.mapCloudEvents(r, ces)
	}
	if !jsonContentType(r.Header.Get("Content-Type")) {
		return nil, fmt.Errorf("%w: Content-Type must be application/json", ErrUnsupportedMedia)
	}
	return s.mapJSON(r, maxBatch)
}

// jsonContentType reports whether ct is a JSON media type.
func jsonContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return jsonMedia(strings.ToLower(strings.TrimSpace(mt)))
}

func (s *Source) mapJSON(r *Request, maxBatch int) ([]Mapped, error) {
	if !utf8.Valid(r.Body) || !json.Valid(r.Body) {
		return nil, fmt.Errorf("%w: body is not valid JSON in UTF-8", events.ErrMalformed)
	}
	root := gjson.ParseBytes(r.Body)
	var raws []gjson.Result
	switch {
	case root.IsObject():
		raws = []gjson.Result{root}
	case root.IsArray():
		raws = root.Array()
	default:
		return nil, fmt.Errorf("%w: body must be an object or an array of objects", events.ErrMalformed)
	}
	switch {
	case len(raws) == 0:
		return nil, &events.ValidationError{Errors: []events.FieldError{{Reason: "batch must hold at least one item"}}}
	case len(raws) > maxBatch:
		return nil, &events.ValidationError{Errors: []events.FieldError{{Reason: "batch holds " + strconv.Itoa(len(raws)) + " items; the limit is " + strconv.Itoa(maxBatch)}}}
	}
	body, err := fromGJSON(root, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", events.ErrMalformed, err)
	}
	vars := map[string]any{"body": body, "headers": s.mappingHeaders(r), "ce": map[string]string{}}
	c := &ceCollector{}
	var out []Mapped
	for i, raw := range raws {
		c.index = i
		if !raw.IsObject() {
			c.add("", "item must be a JSON object")
			continue
		}
		item := body
		if root.IsArray() {
			item = body.([]any)[i]
		}
		vars["item"] = item
		id := s.deliveryID(c, r, raw, i, len(raws))
		m, ok := s.mapItem(c, vars, i, id, "")
		if ok {
			out = append(out, m)
		}
	}
	return s.finish(c, out)
}

func (s *Source) mapCloudEvents(r *Request, ces []CloudEvent) ([]Mapped, error) {
	c := &ceCollector{}
	var out []Mapped
	headers := s.mappingHeaders(r)
	for i, ce := range ces {
		c.index = i
		id := s.Name + ":" + ce.ID
		var occurred string
		if !ce.Time.IsZero() {
			occurred = ce.Attrs["time"]
		}
		if s.mapping == nil {
			if m, ok := s.passThrough(c, i, id, occurred, ce.Data); ok {
				out = append(out, m)
			}
			continue
		}
		item, err := jsonValue(ce.Data)
		if err != nil {
			c.add("data", err.Error())
			continue
		}
		vars := map[string]any{"item": item, "body": item, "headers": headers, "ce": ce.Attrs}
		if m, ok := s.mapItem(c, vars, i, id, occurred); ok {
			out = append(out, m)
		}
	}
	return s.finish(c, out)
}

// finish returns the drafts, or the problems found.
func (s *Source) finish(c *ceCollector, out []Mapped) ([]Mapped, error) {
	if c.errs != nil {
		return nil, &events.ValidationError{Errors: c.errs}
	}
	if len(out) == 0 {
		field := "map.filter"
		if s.mapping != nil && s.mapping.filter != nil {
			field = s.mapping.filter.field()
		}
		return nil, &events.ValidationError{Errors: []events.FieldError{{Field: field, Reason: "no item maps to an event (map.filter is false for every item)"}}}
	}
	return out, nil
}

// deliveryID returns the id of item i of n, prefixed with the source name.
func (s *Source) deliveryID(c *ceCollector, r *Request, item gjson.Result, i, n int) string {
	var v string
	if s.id.header != "" {
		v = r.Header.Get(s.id.header)
		if v == "" {
			c.add(s.id.field(), "is required: it is the delivery id")
			return ""
		}
		if n > 1 {
			v += ":" + strconv.Itoa(i)
		}
		return s.Name + ":" + v
	}
	res := item.Get(s.id.path)
	switch res.Type {
	case gjson.String:
		v = res.Str
	case gjson.Number:
		v = res.Raw
	}
	if v == "" {
		c.add(s.id.path, "is required: a string or number, the delivery id")
		return ""
	}
	return s.Name + ":" + v
}

// mapItem evaluates the mapping on one item.
func (s *Source) mapItem(c *ceCollector, vars map[string]any, i int, id, occurred string) (Mapped, bool) {
	mp := s.mapping
	before := len(c.errs)
	fail := func(e *expr, err error) {
		c.add(e.field(), err.Error())
	}
	if mp.filter != nil {
		v, err := mp.filter.eval(vars)
		if err != nil {
			fail(mp.filter, err)
			return Mapped{}, false
		}
		if b, ok := v.Value().(bool); !ok || !b {
			return Mapped{}, false
		}
	}
	m := Mapped{Item: i, obj: map[string]any{"id": id, "target": mp.target}}
	if mp.structure != "" {
		m.obj["structure"] = mp.structure
	}
	if v, err := mp.contactID.eval(vars); err != nil {
		fail(mp.contactID, err)
	} else if sid, js, err := contactID(v); err != nil {
		fail(mp.contactID, fmt.Errorf("map.contact_id: %w", err))
	} else {
		m.SourceContactID = sid
		m.obj["contact_id"] = js
	}
	switch {
	case mp.occurredAt != nil:
		if v, err := mp.occurredAt.eval(vars); err != nil {
			fail(mp.occurredAt, err)
		} else if t, err := occurredAt(v); err != nil {
			fail(mp.occurredAt, fmt.Errorf("map.occurred_at: %w", err))
		} else {
			m.obj["occurred_at"] = t
		}
	case occurred != "":
		m.obj["occurred_at"] = occurred
	default:
		c.add("time", "is required when map.occurred_at is not set")
	}
	if v, err := mp.patch.eval(vars); err != nil {
		fail(mp.patch, err)
	} else if p, err := toJSON(v); err != nil {
		fail(mp.patch, fmt.Errorf("map.patch: %w", err))
	} else if _, ok := p.(map[string]any); !ok {
		fail(mp.patch, errors.New("map.patch: must be a map"))
	} else {
		m.obj["patch"] = p
	}
	return m, len(c.errs) == before
}

// passThrough reads a CloudEvent whose data is a patchbay event without id
// (ce-id is the id) and, optionally, occurred_at (ce-time is the default).
func (s *Source) passThrough(c *ceCollector, i int, id, occurred string, data json.RawMessage) (Mapped, bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		c.add("data", "must be a JSON object")
		return Mapped{}, false
	}
	if _, ok := fields["id"]; ok {
		c.add("data.id", "must be absent: the event id is the CloudEvents id")
		return Mapped{}, false
	}
	m := Mapped{Item: i, obj: make(map[string]any, len(fields)+2)}
	for k, v := range fields {
		m.obj[k] = v
	}
	m.obj["id"] = id
	if _, ok := fields["occurred_at"]; !ok && occurred != "" {
		m.obj["occurred_at"] = occurred
	}
	if raw, ok := fields["contact_id"]; ok {
		var sid string
		if json.Unmarshal(raw, &sid) != nil {
			sid = string(raw)
		}
		m.SourceContactID = sid
	}
	return m, true
}

// Validate validates the drafts exactly as POST /v1/events validates a
// native batch (events.DecodeRequest over their JSON), all or nothing, and
// sets each Event. An Unmapped draft is validated with a placeholder contact
// id. The error is an *events.ValidationError whose Index is the source
// item's and whose Field names the source field, with the event field and
// the reason in Reason.
func (s *Source) Validate(ms []Mapped, lim events.Limits) error {
	objs := make([]map[string]any, len(ms))
	for i := range ms {
		objs[i] = ms[i].obj
		if ms[i].Unmapped {
			o := make(map[string]any, len(ms[i].obj))
			for k, v := range ms[i].obj {
				o[k] = v
			}
			o["contact_id"] = placeholder[ms[i].Target()]
			objs[i] = o
		}
	}
	arr, err := json.Marshal(objs)
	if err != nil {
		return fmt.Errorf("%w: %v", events.ErrMalformed, err)
	}
	evs, _, err := events.DecodeRequest(arr, "", lim)
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		return s.sourceErrors(ms, ve)
	}
	if err != nil {
		return err
	}
	for i := range ms {
		ms[i].Event = evs[i]
	}
	return nil
}

// sourceErrors rewrites event problems so they name the source item and
// field.
func (s *Source) sourceErrors(ms []Mapped, ve *events.ValidationError) error {
	out := make([]events.FieldError, len(ve.Errors))
	for i, fe := range ve.Errors {
		item := 0
		if fe.Index < len(ms) {
			item = ms[fe.Index].Item
		}
		top := fe.Field
		if j := strings.IndexAny(top, ".["); j >= 0 {
			top = top[:j]
		}
		field, via := s.sourceField(top)
		reason := fe.Reason
		if fe.Field != "" {
			reason = fe.Field + ": " + reason
		}
		if via != "" {
			reason += " (" + via + ")"
		}
		out[i] = events.FieldError{Index: item, Field: field, Reason: reason}
	}
	return &events.ValidationError{Errors: out}
}

// sourceField returns the source field behind event field top and the
// mapping key that produced it.
func (s *Source) sourceField(top string) (string, string) {
	if top == "id" {
		return s.id.field(), ""
	}
	if s.mapping == nil {
		if top == "" {
			return "", ""
		}
		return "data." + top, ""
	}
	var e *expr
	switch top {
	case "contact_id":
		e = s.mapping.contactID
	case "occurred_at":
		if s.mapping.occurredAt == nil {
			return "time", ""
		}
		e = s.mapping.occurredAt
	case "patch":
		e = s.mapping.patch
	case "target", "structure":
		return "map." + top, ""
	default:
		return top, ""
	}
	return e.field(), "map." + e.key
}
