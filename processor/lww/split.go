package lww

import (
	"encoding/json"
	"slices"

	"github.com/patchbay/patchbay/events"
)

// Split is a PATCH body for one target split into its fields, as
// MergeSplit and FilterSplit return it: the worker splits a delivery's
// patch once, in MergeSplit, and FilterSplit and Store.CommitSplit read the
// fields from the Split instead of parsing the body again. The zero Split
// is no patch (a superseded delivery).
//
// A typical patch's fields are held in the Split itself, not on the heap:
// a Split is a large value (about 1.3 KiB), meant to live in its caller's
// frame; copying it is still cheaper than the allocation it saves.
type Split struct {
	target events.Target
	patch  json.RawMessage
	n      int            // the units of patch in arr, when more is nil
	arr    [unitsBuf]unit // as units returns them
	more   []unit         // the units of patch, when there are more than arr holds
}

// Patch returns the PATCH body: the bytes Merge or Filter would return for
// the same arguments (nil for the zero Split).
func (s *Split) Patch() json.RawMessage { return s.patch }

// newSplit is the Split of patch at target, us its units (copied).
func newSplit(target events.Target, patch json.RawMessage, us []unit) Split {
	s := Split{target: target, patch: patch}
	if len(us) > len(s.arr) {
		s.more = slices.Clone(us)
		return s
	}
	s.n = copy(s.arr[:], us)
	return s
}

// unitsAt returns the units of s's patch at target: s's own, or, for a
// Split made for another target (or the zero Split), the patch split again
// at target as Filter would, appended to dst.
func (s *Split) unitsAt(dst []unit, target events.Target) ([]unit, error) {
	if s.target != target {
		return units(dst, target, s.patch, false)
	}
	if s.more != nil {
		return s.more, nil
	}
	return s.arr[:s.n], nil
}
