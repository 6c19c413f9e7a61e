package events

import "testing"

// TestWalkersTerminate feeds the walkers text that is not valid JSON: they
// must stop without panicking or looping.
func TestWalkersTerminate(t *testing.T) {
	inputs := []string{"", "{", "[", "{}", "[]", `{"a"`, `{"a":}`, `{"a":1,}`, `[1,}`, `[}`, `{:}`, `["\`, `{"a":"\`, `[,,,]`, `{"a":[}`, `"\ud800`, `"\ud800\`, `"\ud800\u`}
	for _, in := range inputs {
		t.Run(in, func(t *testing.T) {
			for m, n := newMembers([]byte(in)), 0; ; n++ {
				if _, _, ok := m.next(); !ok {
					break
				}
				if n > len(in) {
					t.Fatal("members does not terminate")
				}
			}
			for a, n := newElements([]byte(in)), 0; ; n++ {
				if _, ok := a.next(); !ok {
					break
				}
				if n > len(in) {
					t.Fatal("elements does not terminate")
				}
			}
			_ = skipValue([]byte(in), 0)
			_ = unpairedSurrogate([]byte(in))
			if len(in) > 0 && (in[0] == '{' || in[0] == '[') {
				_ = isEmptyContainer([]byte(in))
			}
		})
	}
}

func TestUnpairedSurrogate(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`"plain"`, -1},
		{`"\n\"\\u0041"`, -1},
		{`"\u00e9\ud83d\ude00"`, -1},
		{`"\\ud800"`, -1},
		{`"\ud800"`, 1},
		{`"\ud800\u0041"`, 1},
		{`"ab\udc00"`, 3},
		{`"\ud83d\ude00\ud83d"`, 13},
		{`"\u12"`, 1},
		// the ends of the low surrogate range, and upper-case digits
		{`"\ud800\udc00"`, -1},
		{`"\udbff\udfff"`, -1},
		{`"\uD83D\uDE00"`, -1},
		{`"\uD800"`, 1},
		{`"\uDBFF\uE000"`, 1},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := unpairedSurrogate([]byte(tc.in)); got != tc.want {
				t.Fatalf("unpairedSurrogate(%s) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestIsDomain(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"acme.com", true},
		{"ACME.co.uk", true},
		{"xn--bcher-kva.example", true},
		{"a-b.io", true},
		{"acme", false},
		{"acme.", false},
		{".acme.com", false},
		{"acme..com", false},
		{"-acme.com", false},
		{"acme-.com", false},
		{"acme.123", false},
		{"1.2.3.4", false},
		{"acme_corp.com", false},
		{"acmé.com", false},
		{"a b.com", false},
		{string(make([]byte, 64)) + ".com", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := isDomain([]byte(tc.in)); got != tc.want {
				t.Fatalf("isDomain(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
