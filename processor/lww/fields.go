package lww

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
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
// is not a JSON object of that shape, including one with a repeated object
// key (ingest refuses those too; a repeated field_name is not a repeated
// key).
func Fields(target events.Target, patch json.RawMessage) ([]string, error) {
	us, err := units(nil, target, patch, false)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = u.name
	}
	return names, nil
}

// unitsBuf is the number of units a caller's buffer for units holds on its
// stack: more fields than a typical patch sets.
const unitsBuf = 16

// units splits patch into its fields at target, appending them to dst
// (which may be a caller's buffer, so a typical patch costs no slice).
// valid says patch is known to be valid JSON.
func units(dst []unit, target events.Target, patch json.RawMessage, valid bool) ([]unit, error) {
	var custom, prefix string
	switch target {
	case events.TargetSkipcall:
		custom, prefix = skipcallCustom, SkipcallCustomFieldPrefix
	case events.TargetRevyOps:
		custom, prefix = revyopsCustom, RevyOpsCustomFieldPrefix
	default:
		return nil, fmt.Errorf("%w: unknown target %q", ErrInvalid, target)
	}
	if !valid && !json.Valid(patch) {
		return nil, fmt.Errorf("%w: %s patch is not valid JSON", ErrInvalid, target)
	}
	out := dst[:0]
	var tops [16]string
	seen := tops[:0]
	err := eachMemberRaw(patch, func(tok []byte, v json.RawMessage) error {
		k, err := topKey(tok)
		if err != nil {
			return err
		}
		if slices.Contains(seen, k) {
			return fmt.Errorf("key %q repeated", k)
		}
		seen = append(seen, k)
		if k != custom {
			out = append(out, unit{name: k, top: k, val: v})
			return nil
		}
		if target == events.TargetSkipcall {
			return eachMemberRaw(v, func(tok []byte, cv json.RawMessage) error {
				name, err := unquotePrefixed(prefix, tok)
				if err != nil {
					return err
				}
				ck := name[len(prefix):]
				if repeated(out, name) {
					return fmt.Errorf("key %q repeated in %s", ck, k)
				}
				// sub shares name's bytes: one string per member.
				out = append(out, unit{name: name, top: k, sub: name[len(prefix):], keyed: true, val: cv})
				return nil
			})
		}
		return eachElement(v, func(i int, it json.RawMessage) error {
			name, ok := "", false
			err := eachMember(it, func(ik string, iv json.RawMessage) error {
				if ik == "field_name" && len(iv) > 0 && iv[0] == '"' {
					var err error
					name, err = unquote(iv)
					ok = err == nil
				}
				return nil
			})
			if err != nil || !ok {
				return fmt.Errorf("%s[%d] has no string field_name", k, i)
			}
			full := prefix + name
			out = append(out, unit{name: full, top: k, sub: full[len(prefix):], keyed: true, val: it})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s patch: %v", ErrInvalid, target, err)
	}
	return out, nil
}

// topKey decodes the JSON string token of a top-level key, as unquote
// does; a key of the providers' schemas (all a valid event's patch holds)
// is its constant instead of a new string per event.
func topKey(tok []byte) (string, error) {
	if len(tok) >= 2 {
		switch string(tok[1 : len(tok)-1]) {
		// Skipcall's PublicUpdateContactDto.
		case "firstName":
			return "firstName", nil
		case "lastName":
			return "lastName", nil
		case "email":
			return "email", nil
		case "company":
			return "company", nil
		case "city":
			return "city", nil
		case "country":
			return "country", nil
		case "url":
			return "url", nil
		case "linkedinUrl":
			return "linkedinUrl", nil
		case "linkedinSalesUrl":
			return "linkedinSalesUrl", nil
		case "role":
			return "role", nil
		case "allowPhoneCalls":
			return "allowPhoneCalls", nil
		case "phoneNumbers":
			return "phoneNumbers", nil
		case skipcallCustom:
			return skipcallCustom, nil
		// RevyOps' PatchedContactPatchRequest.
		case "linkedin_url":
			return "linkedin_url", nil
		case "first_name":
			return "first_name", nil
		case "last_name":
			return "last_name", nil
		case "company_id":
			return "company_id", nil
		case "origin":
			return "origin", nil
		case "contact_status":
			return "contact_status", nil
		case revyopsCustom:
			return revyopsCustom, nil
		}
	}
	return unquote(tok)
}

// repeated reports whether a unit named name is in us. Patches have few
// fields, so a linear scan beats a map.
func repeated(us []unit, name string) bool {
	for _, u := range us {
		if u.name == name {
			return true
		}
	}
	return false
}

// build encodes units as one patch: top-level keys in order of first
// appearance, Skipcall customFields members in a JSON object and RevyOps
// contact_custom_fields items in an array, each in order of appearance. It
// also returns the units of the patch as units would split it (a new
// slice): grouped by top-level key in that order, a top-level key given
// twice only once, with its last value (the one written).
func build(us []unit) (json.RawMessage, []unit) {
	var topBuf [unitsBuf]string
	tops := topBuf[:0]
	for _, u := range us {
		if !slices.Contains(tops, u.top) {
			tops = append(tops, u.top)
		}
	}
	out := make([]unit, 0, len(us))
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, top := range tops {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeString(&buf, top)
		buf.WriteByte(':')
		g := len(out) // this key's units start here
		for _, u := range us {
			if u.top == top {
				out = append(out, u)
			}
		}
		switch {
		case out[g].keyed && top == skipcallCustom:
			buf.WriteByte('{')
			for j, u := range out[g:] {
				if j > 0 {
					buf.WriteByte(',')
				}
				writeString(&buf, u.sub)
				buf.WriteByte(':')
				buf.Write(u.val)
			}
			buf.WriteByte('}')
		case out[g].keyed:
			buf.WriteByte('[')
			for j, u := range out[g:] {
				if j > 0 {
					buf.WriteByte(',')
				}
				buf.Write(u.val)
			}
			buf.WriteByte(']')
		default:
			out[g] = out[len(out)-1]
			out = out[:g+1]
			buf.Write(out[g].val)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), out
}

// writeString writes s as a JSON string without HTML escaping, so keys reach
// the provider as the source wrote them.
func writeString(buf *bytes.Buffer, s string) {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		plain = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\'
	}
	if plain {
		buf.WriteByte('"')
		buf.WriteString(s)
		buf.WriteByte('"')
		return
	}
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
