package lww

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/patchbay/patchbay/events"
)

// Filter drops from patch every field whose clock in st is at least as new
// as its clock in clocks: a newer value was applied, or this very change was
// (an equal clock is the same event). kept is the patch with the remaining
// fields and keptClocks their clocks; dropped lists the dropped field names,
// sorted, each once.
//
// Every field pending in st (a repair owed, see Store.Commit) that patch
// does not set with a newer clock is added to kept with its stored value and
// clock, so the PATCH puts the newer value back at the provider (if patch
// set it too, its own older value is dropped as usual).
//
// When nothing is dropped or added, Filter returns patch and clocks
// themselves (the same bytes and map) and a nil dropped, so the common path
// costs one parse.
// When every field is dropped, kept and keptClocks are nil: the event is
// superseded and must not be sent. Filter fails, wrapping ErrInvalid, when
// patch is not valid for target (see Fields) or a field of patch has no
// clock in clocks.
func Filter(target events.Target, patch json.RawMessage, clocks map[string]Clock, st State) (kept json.RawMessage, keptClocks map[string]Clock, dropped []string, err error) {
	var buf [unitsBuf]unit
	us, err := units(buf[:0], target, patch, false)
	if err != nil {
		return nil, nil, nil, err
	}
	kept, _, keptClocks, dropped, _, err = filter(target, patch, us, clocks, st)
	return kept, keptClocks, dropped, err
}

// FilterSplit is Filter for a patch split by MergeSplit (or FilterSplit):
// kept.Patch() is the patch Filter returns for sp.Patch(), and when
// nothing is dropped or added kept is sp itself. It fails as Filter does.
func FilterSplit(target events.Target, sp Split, clocks map[string]Clock, st State) (kept Split, keptClocks map[string]Clock, dropped []string, err error) {
	var buf [unitsBuf]unit
	us, err := sp.unitsAt(buf[:0], target)
	if err != nil {
		return Split{}, nil, nil, err
	}
	patch, keptUs, keptClocks, dropped, same, err := filter(target, sp.patch, us, clocks, st)
	switch {
	case err != nil || patch == nil:
		return Split{}, keptClocks, dropped, err
	case same && sp.target == target:
		return sp, keptClocks, nil, nil
	}
	return newSplit(target, patch, keptUs), keptClocks, dropped, nil
}

// filter is Filter for patch split into us, also returning the units of
// kept, and same: nothing was dropped or added, so kept is patch and keptUs
// is us (else keptUs is a new slice).
func filter(target events.Target, patch json.RawMessage, us []unit, clocks map[string]Clock, st State) (kept json.RawMessage, keptUs []unit, keptClocks map[string]Clock, dropped []string, same bool, err error) {
	var keepBuf [unitsBuf]unit
	keep := keepBuf[:0]
	for _, u := range us {
		c, ok := clocks[u.name]
		if !ok {
			return nil, nil, nil, nil, false, fmt.Errorf("%w: field %q has no clock", ErrInvalid, u.name)
		}
		if stored, ok := st.Fields[u.name]; ok && !c.After(stored) {
			dropped = append(dropped, u.name)
			continue
		}
		keep = append(keep, u)
	}
	var repair []unit
	for _, name := range st.Pending {
		if c, ok := clocks[name]; ok && c.After(st.Fields[name]) {
			continue // the patch sets a newer value
		}
		v, ok := st.Values[name]
		if !ok {
			continue // never pending without a value; nothing to send
		}
		repair = append(repair, storedUnit(target, name, v))
	}
	if len(dropped) == 0 && len(repair) == 0 {
		return patch, us, clocks, nil, true, nil
	}
	if len(dropped) > 0 {
		dropped = sortedUnique(dropped)
	}
	if len(keep)+len(repair) == 0 {
		return nil, nil, nil, dropped, false, nil
	}
	keptClocks = make(map[string]Clock, len(keep)+len(repair))
	for _, u := range keep {
		keptClocks[u.name] = clocks[u.name]
	}
	for _, u := range repair {
		keptClocks[u.name] = st.Fields[u.name]
	}
	kept, keptUs = build(append(keep, repair...))
	return kept, keptUs, keptClocks, dropped, false, nil
}

// storedUnit is the unit of field name at target with its stored value v.
func storedUnit(target events.Target, name string, v json.RawMessage) unit {
	prefix, custom := SkipcallCustomFieldPrefix, skipcallCustom
	if target == events.TargetRevyOps {
		prefix, custom = RevyOpsCustomFieldPrefix, revyopsCustom
	}
	if sub, ok := strings.CutPrefix(name, prefix); ok {
		return unit{name: name, top: custom, sub: sub, keyed: true, val: v}
	}
	return unit{name: name, top: name, val: v}
}

// AnyStale reports whether st holds, for any field of clocks, a clock at
// least as new, or any pending field: whether Filter would drop or add
// anything to a patch whose fields clocks names (as Merge returns them).
// When it reports false the patch can be sent as it is, without Filter's
// parse.
func AnyStale(clocks map[string]Clock, st State) bool {
	if len(st.Pending) > 0 {
		return true
	}
	if len(st.Fields) == 0 {
		return false
	}
	for name, c := range clocks {
		if stored, ok := st.Fields[name]; ok && !c.After(stored) {
			return true
		}
	}
	return false
}
