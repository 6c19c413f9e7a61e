package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// Merge returns one patch whose effect at target equals applying patches in
// order, following each provider's documented PATCH semantics: a later field
// replaces an earlier one (Skipcall phoneNumbers replace the whole list);
// Skipcall customFields merge by key; RevyOps contact_custom_fields merge by
// field_name, later values winning, in order of first appearance. The
// patches must be valid for target; Merge fails, wrapping ErrInvalid, on one
// that is not a JSON object.
func Merge(target Target, patches ...json.RawMessage) (json.RawMessage, error) {
	if len(patches) == 1 {
		return patches[0], nil
	}
	out := map[string]json.RawMessage{}
	for i, p := range patches {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(p, &m); err != nil || m == nil {
			return nil, fmt.Errorf("%w: patch %d is not a JSON object", ErrInvalid, i)
		}
		for k, v := range m {
			prev, seen := out[k]
			switch {
			case !seen:
				out[k] = v
			case target == TargetSkipcall && k == "customFields":
				merged, err := mergeObjects(prev, v)
				if err != nil {
					return nil, fmt.Errorf("%w: patch %d customFields: %v", ErrInvalid, i, err)
				}
				out[k] = merged
			case target == TargetRevyOps && k == "contact_custom_fields":
				merged, err := mergeCustomFields(prev, v)
				if err != nil {
					return nil, fmt.Errorf("%w: patch %d contact_custom_fields: %v", ErrInvalid, i, err)
				}
				out[k] = merged
			default:
				out[k] = v
			}
		}
	}
	return marshalNoEscape(out)
}

// mergeObjects merges two JSON objects, b's members winning.
func mergeObjects(a, b json.RawMessage) (json.RawMessage, error) {
	var ma, mb map[string]json.RawMessage
	if err := json.Unmarshal(a, &ma); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &mb); err != nil {
		return nil, err
	}
	for k, v := range mb {
		ma[k] = v
	}
	return marshalNoEscape(ma)
}

// mergeCustomFields upserts b's items into a by field_name.
func mergeCustomFields(a, b json.RawMessage) (json.RawMessage, error) {
	type item = map[string]json.RawMessage
	var la, lb []item
	if err := json.Unmarshal(a, &la); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &lb); err != nil {
		return nil, err
	}
	pos := make(map[string]int, len(la)+len(lb))
	for i, it := range la {
		pos[string(it["field_name"])] = i
	}
	for _, it := range lb {
		name := string(it["field_name"])
		if i, ok := pos[name]; ok {
			la[i] = it
			continue
		}
		pos[name] = len(la)
		la = append(la, it)
	}
	return marshalNoEscape(la)
}

// marshalNoEscape encodes v compactly with sorted object keys and without
// HTML escaping, so merged strings reach the provider unchanged.
func marshalNoEscape(v any) (json.RawMessage, error) {
	if m, ok := v.(map[string]json.RawMessage); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var buf bytes.Buffer
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			buf.Write(kb)
			buf.WriteByte(':')
			buf.Write(compact(m[k]))
		}
		buf.WriteByte('}')
		return buf.Bytes(), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
