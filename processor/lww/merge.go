package lww

import (
	"encoding/json"
	"fmt"

	"github.com/patchbay/patchbay/events"
)

// Merge coalesces changes to one contact at target into one PATCH body that
// holds, per field (see Fields), the value of the change with the newest
// clock, whatever the order of changes; for equal clocks (a duplicate of the
// same event) the first wins. Skipcall customFields and RevyOps
// contact_custom_fields merge per key, as the providers apply them; within
// one change a repeated field_name keeps the last item, as RevyOps does.
// clocks maps every field of patch to the clock of the change its value came
// from.
//
// A single change is returned unchanged (the same bytes) with its clock on
// each of its fields. Merge fails, wrapping ErrInvalid, when there is no
// change or a patch is not valid for target (see Fields).
func Merge(target events.Target, changes ...Change) (patch json.RawMessage, clocks map[string]Clock, err error) {
	var buf [unitsBuf]unit
	patch, _, clocks, err = merge(buf[:0], target, changes)
	return patch, clocks, err
}

// MergeSplit is Merge, the merged patch returned split into its fields, so
// that FilterSplit and Store.CommitSplit need not split it again. sp.Patch
// is the patch Merge returns (for a single change, its own bytes).
func MergeSplit(target events.Target, changes ...Change) (sp Split, clocks map[string]Clock, err error) {
	var buf [unitsBuf]unit
	patch, us, clocks, err := merge(buf[:0], target, changes)
	if err != nil {
		return Split{}, nil, err
	}
	return newSplit(target, patch, us), clocks, nil
}

// mergeOne is Merge of the single change c, its units appended to dst.
func mergeOne(dst []unit, target events.Target, c Change) (us []unit, clocks map[string]Clock, err error) {
	us, err = units(dst, target, c.Patch, c.Valid)
	if err != nil {
		return nil, nil, err
	}
	clocks = make(map[string]Clock, len(us))
	for _, u := range us {
		clocks[u.name] = c.Clock
	}
	return us, clocks, nil
}

// merge is Merge, also returning the units of patch; a single change's
// are appended to dst.
func merge(dst []unit, target events.Target, changes []Change) (patch json.RawMessage, us []unit, clocks map[string]Clock, err error) {
	if len(changes) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: no change to merge", ErrInvalid)
	}
	if len(changes) == 1 {
		us, clocks, err := mergeOne(dst, target, changes[0])
		if err != nil {
			return nil, nil, nil, err
		}
		return changes[0].Patch, us, clocks, nil
	}
	type pick struct {
		u      unit
		change int
	}
	best := map[string]pick{}
	var order []string // field names in order of first appearance
	var buf [unitsBuf]unit
	for i, c := range changes {
		us, err := units(buf[:0], target, c.Patch, c.Valid)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("change %d: %w", i, err)
		}
		for _, u := range us {
			cur, seen := best[u.name]
			switch {
			case !seen:
				order = append(order, u.name)
			case cur.change == i: // repeated within one change: the later item wins
			case !c.Clock.After(changes[cur.change].Clock):
				continue
			}
			best[u.name] = pick{u: u, change: i}
		}
	}
	picked := make([]unit, len(order))
	clocks = make(map[string]Clock, len(order))
	for i, name := range order {
		p := best[name]
		picked[i] = p.u
		clocks[name] = changes[p.change].Clock
	}
	patch, us = build(picked)
	return patch, us, clocks, nil
}
