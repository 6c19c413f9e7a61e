package events

import (
	"encoding/binary"
	"testing"
)

// TestSpecial8 checks the eight-byte test of checker.str against
// plainStringByte for every byte value at every position, beside plain
// bytes and beside other special ones.
func TestSpecial8(t *testing.T) {
	for _, fill := range []byte{'a', ' ', '~', 0x7f, '!', '#', '[', ']'} {
		for pos := range 8 {
			for v := range 256 {
				var w [8]byte
				for k := range w {
					w[k] = fill
				}
				w[pos] = byte(v)
				want := !plainStringByte[v] && v != 0x7f
				if got := special8(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("special8(%q) = %v, want %v", w, got, want)
				}
			}
		}
	}
	// Neighbours, where a borrow from one byte reaches the next.
	for pos := range 7 {
		for a := range 256 {
			for b := range 256 {
				w := [8]byte{'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'}
				w[pos], w[pos+1] = byte(a), byte(b)
				want := !plainStringByte[a] && a != 0x7f || !plainStringByte[b] && b != 0x7f
				if got := special8(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("special8(%q) = %v, want %v", w, got, want)
				}
			}
		}
	}
}
