package events

import (
	"strings"

	"github.com/google/uuid"
)

// maxIDLen bounds an event id in bytes.
const maxIDLen = 200

// idProblem returns why id is not a valid event id, or "". An id becomes a
// Nats-Msg-Id header, so it must be printable ASCII without spaces.
func idProblem(id string) string {
	switch {
	case id == "":
		return "is required"
	case len(id) > maxIDLen:
		return "must be at most 200 bytes"
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return "must be printable ASCII without spaces"
		}
	}
	return ""
}

// canonicalRevyOpsID returns s, a RevyOps contact id, as a decimal without
// leading zeros, or a reason it is not a positive 64-bit integer.
func canonicalRevyOpsID(s string) (string, string) {
	if problem := positiveIntProblem(s); problem != "" {
		return "", problem
	}
	return strings.TrimLeft(s, "0"), ""
}

// maxInt64 is the decimal form of math.MaxInt64.
const maxInt64 = "9223372036854775807"

// positiveIntProblem returns why s is not the decimal form of an integer in
// 1..MaxInt64 (digits only, leading zeros allowed), or "".
func positiveIntProblem[T string | []byte](s T) string {
	if len(s) == 0 {
		return "is required"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "must be a positive integer"
		}
	}
	i := 0
	for i < len(s) && s[i] == '0' {
		i++
	}
	t := s[i:]
	switch {
	case len(t) == 0:
		return "must be a positive integer"
	case len(t) > len(maxInt64) || len(t) == len(maxInt64) && string(t) > maxInt64:
		return "must be at most " + maxInt64
	}
	return ""
}

// uuidLen is the length of the hyphenated text form of a UUID.
const uuidLen = 36

// canonicalSkipcallID returns s, a Skipcall contact id, as a lower-case
// hyphenated UUID, or a reason it is not one. The braced, urn: and
// unhyphenated forms that uuid.Parse also accepts are rejected.
func canonicalSkipcallID(s string) (string, string) {
	if s == "" {
		return "", "is required"
	}
	const form = "must be a UUID like 550e8400-e29b-41d4-a716-446655440000"
	if len(s) != uuidLen {
		return "", form
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", form
	}
	if u == uuid.Nil {
		return "", "must not be the nil UUID"
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'F' {
			return u.String(), ""
		}
	}
	return s, ""
}

// isE164 reports whether s matches ^\+[1-9][0-9]{1,14}$.
func isE164(s []byte) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	for _, c := range s[2:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isDomain reports whether s is a DNS host name with at least two labels
// (letters, digits and inner hyphens, 1..63 bytes each, 253 bytes in all)
// whose last label is not numeric, such as "acme.com".
func isDomain(s []byte) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	labels, start, lastHasLetter := 0, 0, false
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			l := s[start:i]
			if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
				return false
			}
			labels++
			start = i + 1
			lastHasLetter = false
			for _, c := range l {
				if c > '9' {
					lastHasLetter = true
					break
				}
			}
			continue
		}
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return labels >= 2 && lastHasLetter
}
