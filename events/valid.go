package events

import (
	"encoding/binary"
	"unicode/utf8"
)

// This file is patchbay's one-pass JSON check. It accepts a text only if
// json.Valid, utf8.Valid and unpairedSurrogate would all accept it, and it
// says whether the text holds insignificant white space, so a caller can
// skip compacting it. It rejects some texts those three accept (nesting
// deeper than maxCheckDepth): callers then fall back to them, so a false
// here costs time, never a different answer. encoding/json's scanner steps
// a state function per byte and was the largest cost of ingest and of the
// worker's decode (issue 8); this walks string contents, which are most of
// an event, in a tight loop over a table.

// maxCheckDepth bounds the nesting checkJSONFast follows. Patches nest two
// or three levels; encoding/json allows 10000 and decides deeper texts.
const maxCheckDepth = 64

// plainStringByte marks the bytes that stand for themselves inside a JSON
// string: printable ASCII except '"' and '\\'.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// checker walks one JSON text.
type checker struct {
	b      []byte
	spaced bool // insignificant white space was seen
	depth  int
}

// checkJSONFast reports whether b is one JSON value, with optional white
// space around it, in valid UTF-8 without unpaired surrogate escapes, and
// whether it holds insignificant white space (spaced).
func checkJSONFast(b []byte) (ok, spaced bool) {
	c := checker{b: b}
	i := c.value(c.space(0))
	if i < 0 {
		return false, false
	}
	return c.space(i) == len(b), c.spaced
}

// space skips white space at i, noting whether there was any.
func (c *checker) space(i int) int {
	j := skipSpace(c.b, i)
	if j != i {
		c.spaced = true
	}
	return j
}

// value checks the value starting at i and returns the index just past it,
// or -1.
func (c *checker) value(i int) int {
	b := c.b
	if i < 0 || i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return c.str(i)
	case '{':
		return c.object(i)
	case '[':
		return c.array(i)
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	}
	return number(b, i)
}

// object checks the object starting at b[i] == '{'.
func (c *checker) object(i int) int {
	if c.depth++; c.depth > maxCheckDepth {
		return -1
	}
	b := c.b
	i = c.space(i + 1)
	if i < len(b) && b[i] == '}' {
		c.depth--
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		if i = c.str(i); i < 0 {
			return -1
		}
		if i = c.space(i); i >= len(b) || b[i] != ':' {
			return -1
		}
		if i = c.value(c.space(i + 1)); i < 0 {
			return -1
		}
		if i = c.space(i); i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = c.space(i + 1)
		case '}':
			c.depth--
			return i + 1
		default:
			return -1
		}
	}
}

// array checks the array starting at b[i] == '['.
func (c *checker) array(i int) int {
	if c.depth++; c.depth > maxCheckDepth {
		return -1
	}
	b := c.b
	i = c.space(i + 1)
	if i < len(b) && b[i] == ']' {
		c.depth--
		return i + 1
	}
	for {
		if i = c.value(i); i < 0 {
			return -1
		}
		if i = c.space(i); i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = c.space(i + 1)
		case ']':
			c.depth--
			return i + 1
		default:
			return -1
		}
	}
}

// str checks the string starting at b[i] == '"': no control characters,
// valid escapes, surrogate escapes in pairs, valid UTF-8.
func (c *checker) str(i int) int {
	b := c.b
	for i++; ; {
		// Eight bytes at a time while none needs a look (long texts such
		// as notes), then byte by byte.
		for i+8 <= len(b) && !special8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && plainStringByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch ch := b[i]; {
		case ch == '"':
			return i + 1
		case ch == '\\':
			if i = escape(b, i); i < 0 {
				return -1
			}
		case ch < 0x20:
			return -1
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return -1
			}
			i += size
		}
	}
}

// special8 reports whether any of the eight bytes of x is below 0x20, at
// or above 0x80, '"' or '\\': each byte it reports false for is one that
// plainStringByte marks, or DEL (0x7f), which str accepts as well.
func special8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	// (y - ones) &^ y has a byte's high bit set for a zero byte of y
	// (exactly: borrows only mark bytes above a zero one), and
	// (x - ones*0x20) &^ x for a byte of x below 0x20 when no byte is at
	// or above 0x80, which the first term rules out.
	return (x|(quote-ones)&^quote|(backslash-ones)&^backslash|(x-ones*0x20)&^x)&highs != 0
}

// escape checks the escape sequence at b[i] == '\\' and returns the index
// just past it (past both halves of a surrogate pair), or -1.
func escape(b []byte, i int) int {
	if i+1 >= len(b) {
		return -1
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2
	case 'u':
	default:
		return -1
	}
	r, ok := hex4(b, i+2)
	switch {
	case !ok:
		return -1
	case r >= 0xD800 && r < 0xDC00:
		if i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
			return -1
		}
		if lo, ok := hex4(b, i+8); !ok || lo < 0xDC00 || lo > 0xDFFF {
			return -1
		}
		return i + 12
	case r >= 0xDC00 && r <= 0xDFFF:
		return -1
	}
	return i + 6
}

// literal checks that b holds lit at i.
func literal(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// number checks the number starting at i:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

// digits returns the index of the first non-digit at or after i.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
