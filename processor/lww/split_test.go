package lww_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
)

// splitFields are the fields TestSplitAsUnsplit's patches set, per target.
var splitFields = map[events.Target]struct{ top, custom []string }{
	events.TargetSkipcall: {top: []string{"firstName", "city", "phoneNumbers", "email"}, custom: []string{"a", "b", "c"}},
	events.TargetRevyOps:  {top: []string{"first_name", "last_name", "contact_status"}, custom: []string{"a", "b", "c"}},
}

// drawPatch draws a patch for target as a source could write it: keys in
// any order, customFields members or contact_custom_fields items among
// them (a RevyOps field_name possibly repeated, the array or object
// possibly empty).
func drawPatch(rt *rapid.T, target events.Target, tag string) json.RawMessage {
	fs := splitFields[target]
	tops := rapid.SliceOfDistinct(rapid.SampledFrom(append([]string{"custom"}, fs.top...)), rapid.ID).Draw(rt, "tops")
	var parts []string
	for _, k := range tops {
		v := strconv.Quote(k + "-" + tag)
		if k == "phoneNumbers" {
			v = `["+336` + strconv.Itoa(len(tag)) + `"]`
		}
		if k != "custom" {
			parts = append(parts, strconv.Quote(k)+":"+v)
			continue
		}
		var members []string
		if target == events.TargetSkipcall {
			for _, ck := range rapid.SliceOfDistinct(rapid.SampledFrom(fs.custom), rapid.ID).Draw(rt, "members") {
				members = append(members, strconv.Quote(ck)+":"+strconv.Quote(ck+"-"+tag))
			}
			parts = append(parts, `"customFields":{`+strings.Join(members, ",")+`}`)
			continue
		}
		for i, ck := range rapid.SliceOfN(rapid.SampledFrom(fs.custom), 0, 4).Draw(rt, "items") {
			members = append(members, fmt.Sprintf(`{"field_value":"%s-%s-%d","field_name":%q}`, ck, tag, i, ck))
		}
		parts = append(parts, `"contact_custom_fields":[`+strings.Join(members, ", ")+`]`)
	}
	return json.RawMessage("{" + strings.Join(parts, ",") + "}")
}

// drawState draws a stored state for target: some fields with clocks
// around the changes', some with values, some of those pending.
func drawState(rt *rapid.T, target events.Target) lww.State {
	fs := splitFields[target]
	prefix := lww.SkipcallCustomFieldPrefix
	if target == events.TargetRevyOps {
		prefix = lww.RevyOpsCustomFieldPrefix
	}
	st := lww.State{Fields: map[string]lww.Clock{}, Values: map[string]json.RawMessage{}}
	names := append([]string(nil), fs.top...)
	for _, ck := range fs.custom {
		names = append(names, prefix+ck)
	}
	for _, name := range names {
		if !rapid.Bool().Draw(rt, "stored") {
			continue
		}
		st.Fields[name] = at(rapid.IntRange(0, 4).Draw(rt, "second"), "s"+strconv.Itoa(rapid.IntRange(0, 3).Draw(rt, "id")))
		if !rapid.Bool().Draw(rt, "known") {
			continue
		}
		v := json.RawMessage(strconv.Quote(name + "-stored"))
		if ck, ok := strings.CutPrefix(name, lww.RevyOpsCustomFieldPrefix); ok {
			v = json.RawMessage(fmt.Sprintf(`{"field_name":%q,"field_value":"stored"}`, ck))
		} else if name == "phoneNumbers" {
			v = json.RawMessage(`["+33600"]`)
		}
		st.Values[name] = v
		if rapid.Bool().Draw(rt, "pending") {
			st.Pending = append(st.Pending, name)
		}
	}
	sortStrings(st.Pending)
	return st
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestSplitAsUnsplit: MergeSplit, FilterSplit and Store.CommitSplit give
// exactly what Merge, Filter and Commit give for the same changes and
// stored state (patch bytes, clocks, dropped fields, the stored clocks,
// values and pending fields), each Split holding the fields of the patch
// it returns; a kept Split filtered again gives what Filter gives for its
// patch.
func TestSplitAsUnsplit(t *testing.T) {
	ctx := natstest.Context(t)
	store := newStore(t, natstest.JetStream(t), lww.StoreConfig{})
	var n atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		target := rapid.SampledFrom([]events.Target{events.TargetSkipcall, events.TargetRevyOps}).Draw(rt, "target")
		changes := make([]lww.Change, rapid.IntRange(1, 4).Draw(rt, "changes"))
		for i := range changes {
			changes[i] = lww.Change{
				Patch: drawPatch(rt, target, "e"+strconv.Itoa(i)),
				Clock: at(rapid.IntRange(0, 4).Draw(rt, "second"), "e"+strconv.Itoa(rapid.IntRange(0, 3).Draw(rt, "id"))),
				Valid: rapid.Bool().Draw(rt, "valid"),
			}
		}
		st := drawState(rt, target)

		patch, clocks, err := lww.Merge(target, changes...)
		sp, spClocks, spErr := lww.MergeSplit(target, changes...)
		if (err != nil) != (spErr != nil) {
			rt.Fatalf("Merge: %v; MergeSplit: %v", err, spErr)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(sp.Patch(), patch) || !reflect.DeepEqual(spClocks, clocks) {
			rt.Fatalf("MergeSplit gave %s %v, Merge %s %v", sp.Patch(), spClocks, patch, clocks)
		}
		if len(changes) == 1 && &sp.Patch()[0] != &changes[0].Patch[0] {
			rt.Fatal("MergeSplit of a single change did not return its bytes")
		}
		if err := lww.SplitMatchesPatch(sp); err != nil {
			rt.Fatalf("MergeSplit of %s: %v", patch, err)
		}

		kept, keptClocks, dropped, err := lww.Filter(target, patch, clocks, st)
		ks, ksClocks, ksDropped, ksErr := lww.FilterSplit(target, sp, clocks, st)
		if err != nil || ksErr != nil {
			rt.Fatalf("Filter: %v; FilterSplit: %v", err, ksErr)
		}
		if !bytes.Equal(ks.Patch(), kept) || (ks.Patch() == nil) != (kept == nil) ||
			!reflect.DeepEqual(ksClocks, keptClocks) || !reflect.DeepEqual(ksDropped, dropped) {
			rt.Fatalf("FilterSplit gave %s %v %v, Filter %s %v %v", ks.Patch(), ksClocks, ksDropped, kept, keptClocks, dropped)
		}
		if err := lww.SplitMatchesPatch(ks); err != nil {
			rt.Fatalf("FilterSplit of %s to %s: %v", patch, kept, err)
		}
		if kept == nil {
			return // superseded: nothing is sent or committed
		}
		// What a redelivery does: the kept patch filtered again.
		again, againClocks, againDropped, err := lww.Filter(target, kept, keptClocks, st)
		as, asClocks, asDropped, asErr := lww.FilterSplit(target, ks, keptClocks, st)
		if err != nil || asErr != nil {
			rt.Fatalf("Filter again: %v; FilterSplit again: %v", err, asErr)
		}
		if !bytes.Equal(as.Patch(), again) || !reflect.DeepEqual(asClocks, againClocks) || !reflect.DeepEqual(asDropped, againDropped) {
			rt.Fatalf("FilterSplit again gave %s %v %v, Filter %s %v %v", as.Patch(), asClocks, asDropped, again, againClocks, againDropped)
		}

		// Both commits from the same read state, each to its own contact.
		k := strconv.FormatInt(n.Add(1), 10)
		if _, err := store.Commit(ctx, target, "u"+k, st, kept, keptClocks); err != nil {
			rt.Fatal(err)
		}
		if _, err := store.CommitSplit(ctx, target, "s"+k, st, ks, keptClocks); err != nil {
			rt.Fatal(err)
		}
		want, err := store.Get(ctx, target, "u"+k)
		if err != nil {
			rt.Fatal(err)
		}
		got, err := store.Get(ctx, target, "s"+k)
		if err != nil {
			rt.Fatal(err)
		}
		if !reflect.DeepEqual(unapplied(got.Fields), unapplied(want.Fields)) || !reflect.DeepEqual(got.Pending, want.Pending) || !reflect.DeepEqual(jsonValues(got.Values), jsonValues(want.Values)) {
			rt.Fatalf("CommitSplit stored %v %v %s, Commit %v %v %s", got.Fields, got.Pending, jsonValues(got.Values), want.Fields, want.Pending, jsonValues(want.Values))
		}
	})
}

// unapplied is fs without the times the clocks were applied (each commit's
// own).
func unapplied(fs map[string]lww.Clock) map[string]lww.Clock {
	out := make(map[string]lww.Clock, len(fs))
	for k, c := range fs {
		c.Applied = time.Time{}
		out[k] = c
	}
	return out
}

// jsonValues is vs with its values as strings, to compare and print.
func jsonValues(vs map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(vs))
	for k, v := range vs {
		out[k] = string(v)
	}
	return out
}
