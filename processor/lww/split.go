package lww

import (
	"encoding/json"

	"github.com/patchbay/patchbay/events"
)

// Split is a PATCH body for one target split into its fields, as
// MergeSplit and FilterSplit return it: the worker splits a delivery's
// patch once, in MergeSplit, and FilterSplit and Store.CommitSplit read the
// fields from the Split instead of parsing the body again. The zero Split
// is no patch (a superseded delivery). A Split is not modified once made;
// copies share their fields.
type Split struct {
	target events.Target
	patch  json.RawMessage
	us     []unit // the fields of patch, as units returns them
}

// Patch returns the PATCH body: the bytes Merge or Filter would return for
// the same arguments (nil for the zero Split).
func (s Split) Patch() json.RawMessage { return s.patch }

// unitsAt returns the units of s's patch at target: s's own, or, for a
// Split made for another target (or the zero Split), the patch split again
// at target as Filter would, appended to dst.
func (s Split) unitsAt(dst []unit, target events.Target) ([]unit, error) {
	if s.target == target {
		return s.us, nil
	}
	return units(dst, target, s.patch, false)
}
