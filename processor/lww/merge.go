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
	if len(changes) == 0 {
		return nil, nil, fmt.Errorf("%w: no change to merge", ErrInvalid)
	}
	if len(changes) == 1 {
		var buf [unitsBuf]unit
		us, err := units(buf[:0], target, changes[0].Patch, changes[0].Valid)
		if err != nil {
			return nil, nil, err
		}
		clocks = make(map[string]Clock, len(us))
		for _, u := range us {
			clocks[u.name] = changes[0].Clock
		}
		return changes[0].Patch, clocks, nil
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
			return nil, nil, fmt.Errorf("change %d: %w", i, err)
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
	us := make([]unit, len(order))
	clocks = make(map[string]Clock, len(order))
	for i, name := range order {
		p := best[name]
		us[i] = p.u
		clocks[name] = changes[p.change].Clock
	}
	return build(us), clocks, nil
}
