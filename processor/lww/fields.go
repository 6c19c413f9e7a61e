package lww

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/patchbay/patchbay/events"
)

// Field-name prefixes of the per-key fields. A top-level patch key never
// contains '/', so a name with one of these prefixes is always a per-key
// field, and a name without '/' is always a top-level key.
const (
	// SkipcallCustomFieldPrefix prefixes the key of a Skipcall customFields
	// member: "customFields/industry".
	SkipcallCustomFieldPrefix = "customFields/"
	// RevyOpsCustomFieldPrefix prefixes the field_name of a RevyOps
	// contact_custom_fields item: "contact_custom_fields/tier".
	RevyOpsCustomFieldPrefix = "contact_custom_fields/"
)

// The top-level keys whose members are fields of their own.
const (
	skipcallCustom = "customFields"
	revyopsCustom  = "contact_custom_fields"
)

// unit is one field of a patch and the JSON that sets it.
type unit struct {
	name  string          // field name, see Fields
	top   string          // top-level key
	sub   string          // member key (Skipcall customFields) or field_name (RevyOps)
	keyed bool            // a per-key field: a customFields member or a contact_custom_fields item
	val   json.RawMessage // the top-level value, the customFields member value, or the whole contact_custom_fields item
}

// Fields returns the names of the fields patch sets at target, in patch
// order (a RevyOps field_name given twice is listed twice). A field is what a
// PATCH replaces whole:
//
//   - Skipcall: each top-level key ("firstName", "phoneNumbers": the list is
//     replaced whole), except customFields, whose keys are fields of their
//     own: "customFields/<key>".
//   - RevyOps: each top-level key ("first_name", "company_id"), except
//     contact_custom_fields, whose items are fields of their own, named by
//     field_name: "contact_custom_fields/<field_name>".
//
// An empty customFields object or contact_custom_fields array sets no field.
// Fields fails, wrapping ErrInvalid, for an unknown target or a patch that
// is not a JSON object of that shape.
func Fields(target events.Target, patch json.RawMessage) ([]string, error) {
	us, err := units(target, patch)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = u.name
	}
	return names, nil
}

// units splits patch into its fields at target.
func units(target events.Target, patch json.RawMessage) ([]unit, error) {
	var custom, prefix string
	switch target {
	case events.TargetSkipcall:
		custom, prefix = skipcallCustom, SkipcallCustomFieldPrefix
	case events.TargetRevyOps:
		custom, prefix = revyopsCustom, RevyOpsCustomFieldPrefix
	default:
		return nil, fmt.Errorf("%w: unknown target %q", ErrInvalid, target)
	}
	var out []unit
	err := eachMember(patch, func(k string, v json.RawMessage) error {
		if k != custom {
			out = append(out, unit{name: k, top: k, val: v})
			return nil
		}
		if target == events.TargetSkipcall {
			return eachMember(v, func(ck string, cv json.RawMessage) error {
				out = append(out, unit{name: prefix + ck, top: k, sub: ck, keyed: true, val: cv})
				return nil
			})
		}
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil || items == nil {
			return fmt.Errorf("%s is not an array", k)
		}
		for i, it := range items {
			var item struct {
				FieldName *string `json:"field_name"`
			}
			if err := json.Unmarshal(it, &item); err != nil || item.FieldName == nil {
				return fmt.Errorf("%s[%d] has no string field_name", k, i)
			}
			out = append(out, unit{name: prefix + *item.FieldName, top: k, sub: *item.FieldName, keyed: true, val: it})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s patch: %v", ErrInvalid, target, err)
	}
	return out, nil
}

// eachMember calls f with every member of the JSON object obj, in order.
func eachMember(obj json.RawMessage, f func(k string, v json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if err := f(k, v); err != nil {
			return err
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return fmt.Errorf("not a JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("data after the JSON object")
	}
	return nil
}

// build encodes units as one patch: top-level keys in order of first
// appearance, Skipcall customFields members in a JSON object and RevyOps
// contact_custom_fields items in an array, each in order of appearance.
func build(us []unit) json.RawMessage {
	var tops []string
	group := map[string][]unit{}
	for _, u := range us {
		if _, ok := group[u.top]; !ok {
			tops = append(tops, u.top)
		}
		group[u.top] = append(group[u.top], u)
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, top := range tops {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeString(&buf, top)
		buf.WriteByte(':')
		g := group[top]
		switch {
		case g[0].keyed && top == skipcallCustom:
			buf.WriteByte('{')
			for j, u := range g {
				if j > 0 {
					buf.WriteByte(',')
				}
				writeString(&buf, u.sub)
				buf.WriteByte(':')
				buf.Write(u.val)
			}
			buf.WriteByte('}')
		case g[0].keyed:
			buf.WriteByte('[')
			for j, u := range g {
				if j > 0 {
					buf.WriteByte(',')
				}
				buf.Write(u.val)
			}
			buf.WriteByte(']')
		default:
			buf.Write(g[len(g)-1].val)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// writeString writes s as a JSON string without HTML escaping, so keys reach
// the provider as the source wrote them.
func writeString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // Encode's newline
}

// sortedUnique returns names sorted, without repeats.
func sortedUnique(names []string) []string {
	sort.Strings(names)
	out := names[:0]
	for i, n := range names {
		if i == 0 || n != names[i-1] {
			out = append(out, n)
		}
	}
	return out
}
