package events

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Marshal encodes e as compact JSON, the form stored in the stream: the
// bytes encoding/json produces for e with HTML escaping off, so a Patch
// produced by DecodeRequest or Decode is stored byte for byte, and events
// stored by earlier versions read back the same. It does not validate e; it
// fails when Patch is not valid JSON (wrapping encoding/json's
// *json.SyntaxError) or OccurredAt cannot be encoded (a year outside
// 0..9999 or a zone offset of 24 hours or more).
//
// The envelope is written by hand. A Patch that a decoder compacted and
// checked is copied as is; any other Patch is copied if checkJSONFast finds
// it compact and valid, and otherwise compacted by encoding/json, which also
// decides whether it is valid.
func (e *Event) Marshal() ([]byte, error) {
	b, err := e.Append(make([]byte, 0, e.MarshalSize()))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// MarshalSize returns a size Marshal's encoding of e usually fits in: room
// for every field, written plainly.
func (e *Event) MarshalSize() int {
	return len(e.Patch) + len(e.ID) + len(e.ContactID) + len(e.Structure) +
		len(`{"id":"","target":"","contact_id":"","occurred_at":"","patch":,"structure":""}`) + len(e.Target) + len("2006-01-02T15:04:05.999999999+07:00")
}

// Append appends Marshal's encoding of e to buf and returns the extended
// buffer, so that the events of a batch can share one; it fails as Marshal
// does, and then returns buf as it was.
func (e *Event) Append(buf []byte) ([]byte, error) {
	in := buf
	buf = append(buf, `{"id":`...)
	buf = appendString(buf, e.ID)
	buf = append(buf, `,"target":`...)
	buf = appendString(buf, string(e.Target))
	buf = append(buf, `,"contact_id":`...)
	buf = appendString(buf, e.ContactID)
	buf = append(buf, `,"occurred_at":"`...)
	buf, err := e.OccurredAt.AppendText(buf)
	if err != nil {
		return in, fmt.Errorf("encode event %q: occurred_at: %w", e.ID, err)
	}
	buf = append(buf, `","patch":`...)
	if buf, err = e.appendPatch(buf); err != nil {
		return in, fmt.Errorf("encode event %q: patch: %w", e.ID, err)
	}
	if e.Structure != "" {
		buf = append(buf, `,"structure":`...)
		buf = appendString(buf, e.Structure)
	}
	return append(buf, '}'), nil
}

// appendPatch appends e.Patch as encoding/json encodes a json.RawMessage
// without HTML escaping: null when nil, otherwise compacted.
func (e *Event) appendPatch(buf []byte) ([]byte, error) {
	p := e.Patch
	switch {
	case p == nil:
		return append(buf, "null"...), nil
	case e.checked.holds(p):
		return append(buf, p...), nil
	}
	if ok, spaced := checkJSONFast(p); ok && !spaced {
		return append(buf, p...), nil
	}
	out := bytes.NewBuffer(buf)
	if err := json.Compact(out, p); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// appendString appends s as a JSON string, as encoding/json does with HTML
// escaping off. Strings of printable ASCII without '"' and '\\', such as
// every valid id, target, contact id and structure, are copied; others are
// left to encoding/json.
func appendString(buf []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if !plainStringByte[s[i]] {
			plain = false
			break
		}
	}
	if plain {
		buf = append(buf, '"')
		buf = append(buf, s...)
		return append(buf, '"')
	}
	out := bytes.NewBuffer(buf)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}
