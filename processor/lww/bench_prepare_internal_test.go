package lww

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
)

// prepareCommit is Commit's work before its write.
func prepareCommit(b *testing.B, cur State, patch json.RawMessage, applied map[string]Clock, now time.Time) []byte {
	var buf [unitsBuf]unit
	us, err := units(buf[:0], events.TargetSkipcall, patch, true)
	if err != nil {
		b.Fatal(err)
	}
	var (
		fieldBuf [2 * unitsBuf]field
		orderBuf [2 * unitsBuf]int32
	)
	fs, _, changed := mergeFields(fieldBuf[:0], cur, applied, us, now)
	if !changed {
		return nil
	}
	return appendFields(nil, fs, sortFields(orderBuf[:0], fs))
}
