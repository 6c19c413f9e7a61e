package lww

import (
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
)

// BenchmarkMergeCommitPrepare16 is the worker's CPU work in lww for one
// 16-field event delivered alone to a contact without an entry: Merge,
// then what Commit computes before its write (the patch's values, the
// merged state and its encoding).
func BenchmarkMergeCommitPrepare16(b *testing.B) {
	c := Change{Patch: benchPatch16, Clock: Clock{At: time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC), ID: "0b7e4c6a-evt-00000010", Source: "hubspot"}, Valid: true}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if len(mergeCommitPrepare(b, events.TargetSkipcall, c, now)) == 0 {
			b.Fatal("nothing to write")
		}
	}
}

// mergeCommitPrepare is MergeSplit and CommitSplit's work before its
// write, as the worker does them for a single change: the patch split once.
// (Before the Split, this was Merge and prepareCommit, which split the
// patch again.)
func mergeCommitPrepare(b *testing.B, target events.Target, c Change, now time.Time) []byte {
	sp, clocks, err := MergeSplit(target, c)
	if err != nil {
		b.Fatal(err)
	}
	var (
		fieldBuf [2 * unitsBuf]field
		orderBuf [2 * unitsBuf]int32
	)
	vals, _ := sp.unitsAt(nil, events.TargetSkipcall)
	fs, _, changed := mergeFields(fieldBuf[:0], State{}, clocks, vals, now)
	if !changed {
		return nil
	}
	return appendFields(nil, fs, sortFields(orderBuf[:0], fs))
}
