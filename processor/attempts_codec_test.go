package processor

import (
	"testing"
	"time"
)

// TestAttemptsRecordKeepsTheFirstAttempt: the stored count keeps the time
// of the first attempt to the millisecond (a dead letter's first_attempt);
// what cannot be read counts from zero, or starts now.
func TestAttemptsRecordKeepsTheFirstAttempt(t *testing.T) {
	now := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	first := now.Add(-90*time.Minute - 123*time.Millisecond)
	for _, tc := range []struct {
		record    string
		n         int
		firstWant time.Time
	}{
		{string(encodeAttempts(7, first)), 7, first},
		{"", 0, now},
		{"x", 0, now},
		{"-3 1700000000000", 0, time.UnixMilli(1700000000000)},
		{"2 notatime", 2, now},
	} {
		n, got := decodeAttempts([]byte(tc.record), now)
		if n != tc.n || !got.Equal(tc.firstWant) {
			t.Errorf("%q decoded as %d, %s; want %d, %s", tc.record, n, got, tc.n, tc.firstWant)
		}
	}
}
