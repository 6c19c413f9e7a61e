package events

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// This file walks JSON texts that are already known to be valid (checked
// with json.Valid), without building maps or interfaces. Every function
// still bounds-checks its indexes, so invalid input yields wrong answers at
// worst, never a panic.

// kind classifies a JSON value.
type kind uint8

const (
	kindInvalid kind = iota
	kindString
	kindNumber
	kindObject
	kindArray
	kindBool
	kindNull
)

// kindOf returns the kind of the JSON value v, which has no leading space.
func kindOf(v []byte) kind {
	if len(v) == 0 {
		return kindInvalid
	}
	switch v[0] {
	case '"':
		return kindString
	case '{':
		return kindObject
	case '[':
		return kindArray
	case 't', 'f':
		return kindBool
	case 'n':
		return kindNull
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return kindNumber
	}
	return kindInvalid
}

// String names k for error messages.
func (k kind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	case kindBool:
		return "a boolean"
	case kindNull:
		return "null"
	}
	return "nothing"
}

// isSpace reports whether c is JSON white space.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// trimSpace strips JSON white space from both ends of b.
func trimSpace(b []byte) []byte {
	i := skipSpace(b, 0)
	j := len(b)
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// skipString returns the index just past the string starting at b[i] == '"'.
// It jumps from quote to quote with bytes.IndexByte; a quote preceded by an
// odd run of backslashes is escaped.
func skipString(b []byte, i int) int {
	for i++; i < len(b); {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			break
		}
		q := i + j
		k := q
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (q-k)%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
	return len(b)
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}

// members iterates over the members of a JSON object.
type members struct {
	b []byte
	i int
}

// newMembers starts an iteration over obj, a valid JSON object without
// surrounding space.
func newMembers(obj []byte) members {
	return members{b: obj, i: 1}
}

// next returns the next member's raw key token (with quotes) and raw value,
// or ok false at the end.
func (m *members) next() (key, val []byte, ok bool) {
	b := m.b
	i := skipSpace(b, m.i)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		m.i = len(b)
		return nil, nil, false
	}
	ks := i
	i = skipString(b, i)
	key = b[ks:i]
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		m.i = len(b)
		return nil, nil, false
	}
	i = skipSpace(b, i+1)
	vs := i
	i = skipValue(b, i)
	if i == vs {
		m.i = len(b)
		return nil, nil, false
	}
	m.i = i
	return key, b[vs:i], true
}

// elements iterates over the elements of a JSON array.
type elements struct {
	b []byte
	i int
}

// newElements starts an iteration over arr, a valid JSON array without
// surrounding space.
func newElements(arr []byte) elements {
	return elements{b: arr, i: 1}
}

// next returns the next element's raw value, or ok false at the end.
func (a *elements) next() (val []byte, ok bool) {
	b := a.b
	i := skipSpace(b, a.i)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i >= len(b) || b[i] == ']' {
		a.i = len(b)
		return nil, false
	}
	vs := i
	i = skipValue(b, i)
	if i == vs {
		a.i = len(b)
		return nil, false
	}
	a.i = i
	return b[vs:i], true
}

// isEmptyContainer reports whether the object or array v has no members.
func isEmptyContainer(v []byte) bool {
	i := skipSpace(v, 1)
	return i >= len(v) || v[i] == '}' || v[i] == ']'
}

// unquote returns the Go string held by the JSON string token tok.
func unquote(tok []byte) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return "", false
	}
	inner := tok[1 : len(tok)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return "", false
	}
	return s, true
}

// keyBytes returns the name held by the JSON string token tok, without
// allocating unless tok holds escapes.
func keyBytes(tok []byte) []byte {
	if len(tok) < 2 {
		return nil
	}
	inner := tok[1 : len(tok)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	s, _ := unquote(tok)
	return []byte(s)
}

// stringBytes returns the text held by the JSON string token tok, without
// allocating unless tok holds escapes.
func stringBytes(tok []byte) []byte {
	return keyBytes(tok)
}

// runeLen returns the number of characters in the JSON string token tok.
func runeLen(tok []byte) int {
	return utf8.RuneCount(stringBytes(tok))
}

// unpairedSurrogate returns the offset of the first \u escape in b that is
// an unpaired UTF-16 surrogate, or -1. encoding/json would silently replace
// it with U+FFFD, while the raw patch would still carry it to the provider.
func unpairedSurrogate(b []byte) int {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\\')
		if j < 0 {
			return -1
		}
		i += j
		if i+1 >= len(b) || b[i+1] != 'u' {
			i += 2
			continue
		}
		r, ok := hex4(b, i+2)
		switch {
		case !ok:
			return i
		case r >= 0xD800 && r < 0xDC00:
			lo, ok := rune(0), false
			if i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				lo, ok = hex4(b, i+8)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return i
			}
			i += 12
		case r >= 0xDC00 && r <= 0xDFFF:
			return i
		default:
			i += 6
		}
	}
	return -1
}

// hex4 decodes the four hexadecimal digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// compact returns a copy of the valid JSON value v without insignificant
// white space, as json.Compact would, but without validating v again.
func compact(v []byte) json.RawMessage {
	out := make(json.RawMessage, 0, len(v))
	for i := 0; i < len(v); {
		switch c := v[i]; {
		case c == '"':
			j := skipString(v, i)
			out = append(out, v[i:j]...)
			i = j
		case isSpace(c):
			i++
		default:
			out = append(out, c)
			i++
		}
	}
	return out
}
