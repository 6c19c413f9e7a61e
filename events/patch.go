package events

import (
	"bytes"
	"strconv"
)

// patchField returns the error path of the top-level patch field name.
func patchField(name []byte) string {
	return namePatch + "." + string(name)
}

// indexed returns the error path of element i of the array at base.
func indexed(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

// stringProblem returns why v is not a JSON string of min..max characters,
// or "". A max below zero means no upper bound.
func stringProblem(v []byte, minLen, maxLen int) string {
	if k := kindOf(v); k != kindString {
		return "must be a string, not " + k.String()
	}
	if minLen <= 0 && maxLen < 0 {
		return ""
	}
	n := runeLen(v)
	if n >= minLen && (maxLen < 0 || n <= maxLen) {
		return ""
	}
	switch {
	case maxLen < 0:
		return "must be at least " + strconv.Itoa(minLen) + " characters"
	case minLen <= 0:
		return "must be at most " + strconv.Itoa(maxLen) + " characters"
	}
	return "must be " + strconv.Itoa(minLen) + " to " + strconv.Itoa(maxLen) + " characters"
}

// checkString records a problem on the patch field name unless v is a string
// of minLen..maxLen characters (maxLen < 0: unbounded).
func checkString(c *collector, name, v []byte, minLen, maxLen int) {
	if p := stringProblem(v, minLen, maxLen); p != "" {
		c.add(patchField(name), p)
	}
}

// checkBool records a problem on the patch field name unless v is a boolean.
func checkBool(c *collector, name, v []byte) {
	if k := kindOf(v); k != kindBool {
		c.add(patchField(name), "must be a boolean, not "+k.String())
	}
}

// smallKeySet is how many keys keySet compares linearly before it switches
// to a map.
const smallKeySet = 16

// keySet detects repeated keys among the members of one object. Its zero
// value is empty; it keeps references to the keys it is given.
type keySet struct {
	n     int
	small [smallKeySet][]byte
	big   map[string]struct{}
}

// add records k and reports whether it was recorded before.
func (s *keySet) add(k []byte) bool {
	if s.big != nil {
		if _, ok := s.big[string(k)]; ok {
			return true
		}
		s.big[string(k)] = struct{}{}
		return false
	}
	for _, p := range s.small[:s.n] {
		if bytes.Equal(p, k) {
			return true
		}
	}
	if s.n < smallKeySet {
		s.small[s.n] = k
		s.n++
		return false
	}
	s.big = make(map[string]struct{}, 4*smallKeySet)
	for _, p := range s.small {
		s.big[string(p)] = struct{}{}
	}
	s.big[string(k)] = struct{}{}
	return false
}
