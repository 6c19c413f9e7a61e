package lww

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
)

// prepareCommit is Commit's work before its write, as main (939314e) does it.
func prepareCommit(b *testing.B, cur State, patch json.RawMessage, applied map[string]Clock, now time.Time) []byte {
	var buf [unitsBuf]unit
	us, err := units(buf[:0], events.TargetSkipcall, patch, true)
	if err != nil {
		b.Fatal(err)
	}
	values := make(map[string]json.RawMessage, len(us))
	for _, u := range us {
		values[u.name] = u.val
	}
	next, _, changed := mergeState(cur, applied, values, now)
	if !changed {
		return nil
	}
	return encodeState(next)
}
