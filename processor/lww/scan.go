package lww

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// errNotObject and errNotArray describe a patch of the wrong shape.
var (
	errNotObject = errors.New("not a JSON object")
	errNotArray  = errors.New("not a JSON array")
)

// The scanners below walk JSON that json.Valid accepted, so they only find
// the boundaries of members and elements; they never need to report syntax
// errors.

// eachMember calls f with every member of the valid JSON object obj, in
// order; v is a sub-slice of obj.
func eachMember(obj []byte, f func(k string, v json.RawMessage) error) error {
	return eachMemberRaw(obj, func(tok []byte, v json.RawMessage) error {
		key, err := unquote(tok)
		if err != nil {
			return err
		}
		return f(key, v)
	})
}

// eachMemberRaw is eachMember giving each key as its JSON string token,
// quotes included, for a caller that builds a string of its own from it.
func eachMemberRaw(obj []byte, f func(tok []byte, v json.RawMessage) error) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errNotObject
	}
	i = skipSpace(obj, i+1)
	if obj[i] == '}' {
		return nil
	}
	for {
		end := skipString(obj, i)
		key := obj[i:end]
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // ':'
		vend := skipValue(obj, i)
		if err := f(key, obj[i:vend]); err != nil {
			return err
		}
		i = skipSpace(obj, vend)
		if obj[i] == '}' {
			return nil
		}
		i = skipSpace(obj, i+1) // ','
	}
}

// eachElement calls f with every element of the valid JSON array arr.
func eachElement(arr []byte, f func(i int, v json.RawMessage) error) error {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return errNotArray
	}
	i = skipSpace(arr, i+1)
	if arr[i] == ']' {
		return nil
	}
	for n := 0; ; n++ {
		end := skipValue(arr, i)
		if err := f(n, arr[i:end]); err != nil {
			return err
		}
		i = skipSpace(arr, end)
		if arr[i] == ']' {
			return nil
		}
		i = skipSpace(arr, i+1) // ','
	}
}

// unquotePrefixed returns prefix followed by the JSON string token tok
// decoded, as unquote decodes it, in one string.
func unquotePrefixed(prefix string, tok []byte) (string, error) {
	if bytes.IndexByte(tok, '\\') < 0 && utf8.Valid(tok) {
		return prefix + string(tok[1:len(tok)-1]), nil
	}
	s, err := unquote(tok)
	return prefix + s, err
}

// unquote decodes a JSON string token; the common case without escapes
// and with valid UTF-8 needs no decoder (encoding/json replaces invalid
// UTF-8 with U+FFFD, and so must we, so that names agree).
func unquote(tok []byte) (string, error) {
	if bytes.IndexByte(tok, '\\') < 0 && utf8.Valid(tok) {
		return string(tok[1 : len(tok)-1]), nil
	}
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
// It jumps from quote to quote (bytes.IndexByte), looking at the bytes
// between only for an escape: long text values cost little.
func skipString(b []byte, i int) int {
	for i++; i < len(b); {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b)
		}
		e := bytes.IndexByte(b[i:i+q], '\\')
		if e < 0 {
			return i + q + 1
		}
		i += e + 2 // the escape and the byte it escapes
	}
	return len(b)
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
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
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}
