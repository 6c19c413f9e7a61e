package stream

import "testing"

func TestKeyToken(t *testing.T) {
	for s, want := range map[string]bool{
		"skipcall": true, "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c": true, "A_z=9/-": true,
		"": false, "a.b": false, "a b": false, "a*": false, "a>": false, "zoë": false, "a\x00": false, "@": false,
	} {
		if got := KeyToken(s); got != want {
			t.Errorf("KeyToken(%q) = %v, want %v", s, got, want)
		}
	}
}
