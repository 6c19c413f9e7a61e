package lww_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
	"github.com/patchbay/patchbay/sandbox"
)

// The property test runs rapid's default number of checks (100) with a fixed
// seed unless -rapid.seed or -rapid.checks are given; -lww.long runs 2000.
var long = flag.Bool("lww.long", false, "run the last-writer-wins property test with many more cases")

// pevent is a generated event: a clock and, per field, the value it sets.
type pevent struct {
	clock  lww.Clock
	fields map[string]string // field name -> value tag
}

// patch encodes e as the target's PATCH body.
func (e pevent) patch(target events.Target) json.RawMessage {
	body := map[string]any{}
	custom := map[string]string{}
	for f, v := range e.fields {
		switch {
		case strings.HasPrefix(f, lww.SkipcallCustomFieldPrefix):
			custom[strings.TrimPrefix(f, lww.SkipcallCustomFieldPrefix)] = v
		case strings.HasPrefix(f, lww.RevyOpsCustomFieldPrefix):
			custom[strings.TrimPrefix(f, lww.RevyOpsCustomFieldPrefix)] = v
		case f == "phoneNumbers":
			body[f] = []string{v, v + "9"}
		default:
			body[f] = v
		}
	}
	if len(custom) > 0 {
		if target == events.TargetSkipcall {
			body["customFields"] = custom
		} else {
			var items []map[string]string
			for _, k := range sortedKeys(custom) {
				items = append(items, map[string]string{"field_name": k, "field_value": custom[k]})
			}
			body["contact_custom_fields"] = items
		}
	}
	b, _ := json.Marshal(body)
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var universe = map[events.Target][]string{
	events.TargetSkipcall: {"firstName", "city", "phoneNumbers", "customFields/a", "customFields/b", "customFields/c"},
	events.TargetRevyOps:  {"first_name", "last_name", "contact_status", "contact_custom_fields/a", "contact_custom_fields/b"},
}

// TestPropertyLastWriterWins: random events for one contact (ties in time
// included), delivered in random order with duplicates, coalesced in random
// batches, with provider failures and commits lost after the provider's 2xx
// (the event is then redelivered); the sandbox ends with, per field, the
// value of the event with the newest clock.
func TestPropertyLastWriterWins(t *testing.T) {
	if *long {
		flag.Set("rapid.checks", "2000")
	}
	if f := flag.Lookup("rapid.seed"); f != nil && f.Value.String() == "0" {
		flag.Set("rapid.seed", "20261125")
	}
	ctx := natstest.Context(t)
	store := newStore(t, natstest.JetStream(t), lww.StoreConfig{})
	skip, err := sandbox.NewSkipcall(sandbox.SkipcallConfig{AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	revy, err := sandbox.NewRevyOps(sandbox.RevyOpsConfig{AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		target := rapid.SampledFrom([]events.Target{events.TargetSkipcall, events.TargetRevyOps}).Draw(rt, "target")
		k := n.Add(1)
		contact := strconv.FormatInt(k, 10)
		if target == events.TargetSkipcall {
			contact = fmt.Sprintf("00000000-0000-4000-8000-%012d", k)
		}
		fields := universe[target]

		nev := rapid.IntRange(1, 10).Draw(rt, "events")
		evs := make([]pevent, nev)
		ids := rapid.Permutation([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}).Draw(rt, "ids")
		for i := range evs {
			sec := rapid.IntRange(0, 3).Draw(rt, "second") // few seconds: many ties, broken by id
			set := rapid.SliceOfNDistinct(rapid.SampledFrom(fields), 1, len(fields), rapid.ID).Draw(rt, "fields")
			e := pevent{clock: at(sec, fmt.Sprintf("e%d", ids[i])), fields: map[string]string{}}
			for _, f := range set {
				e.fields[f] = fmt.Sprintf("%d%05d", 1+ids[i], i) // digits: valid in every field, phone numbers included
				if f == "phoneNumbers" {
					e.fields[f] = "+336" + e.fields[f]
				}
			}
			evs[i] = e
		}
		// Deliveries: every event once or more, in random order.
		var queue []int
		for i := range evs {
			for range rapid.IntRange(1, 3).Draw(rt, "copies") {
				queue = append(queue, i)
			}
		}
		queue = rapid.Permutation(queue).Draw(rt, "order")
		faults := rapid.IntRange(0, 4).Draw(rt, "faults")

		for len(queue) > 0 {
			size := min(rapid.IntRange(1, 4).Draw(rt, "batch"), len(queue))
			batch := queue[:size]
			queue = queue[size:]
			changes := make([]lww.Change, len(batch))
			for i, ix := range batch {
				changes[i] = lww.Change{Patch: evs[ix].patch(target), Clock: evs[ix].clock}
			}
			merged, clocks, err := lww.Merge(target, changes...)
			if err != nil {
				rt.Fatal(err)
			}
			st, err := store.Get(ctx, target, contact)
			if err != nil {
				rt.Fatal(err)
			}
			kept, keptClocks, dropped, err := lww.Filter(target, merged, clocks, st)
			if err != nil {
				rt.Fatal(err)
			}
			// The worker skips Filter when AnyStale says nothing would drop.
			if stale := lww.AnyStale(clocks, st); stale != (len(dropped) > 0) {
				rt.Fatalf("AnyStale = %v, but Filter dropped %v", stale, dropped)
			}
			if kept == nil {
				continue // superseded: acked
			}
			fault := 0
			if faults > 0 {
				fault = rapid.IntRange(0, 2).Draw(rt, "fault") // 0 none, 1 provider 5xx, 2 commit lost after the 2xx
			}
			if fault == 1 {
				faults--
				queue = append(queue, batch...) // redelivered later
				continue
			}
			if status := patchSandbox(target, contact, kept, skip, revy); status != http.StatusOK {
				rt.Fatalf("sandbox answered %d to %s", status, kept)
			}
			if fault == 2 {
				faults--
				queue = append(queue, batch...)
				continue
			}
			if _, err := store.Commit(ctx, target, contact, st, kept, keptClocks); err != nil {
				rt.Fatal(err)
			}
		}

		got := sandboxFields(rt, target, contact, skip, revy)
		for _, f := range fields {
			var best *pevent
			for i := range evs {
				if _, ok := evs[i].fields[f]; ok && (best == nil || evs[i].clock.After(best.clock)) {
					best = &evs[i]
				}
			}
			want := ""
			if best != nil {
				want = best.fields[f]
			}
			if got[f] != want {
				rt.Fatalf("field %s = %q, want %q (the newest event's)", f, got[f], want)
			}
		}
	})
}

// patchSandbox sends patch to the contact at the target's sandbox and
// returns the status.
func patchSandbox(target events.Target, contact string, patch []byte, skip *sandbox.Skipcall, revy *sandbox.RevyOps) int {
	path, h, hdr := "/v1/contacts/"+contact, http.Handler(skip), "Authorization"
	key := "Bearer sk_test_property"
	if target == events.TargetRevyOps {
		path, h, hdr, key = "/public/v2/contacts/"+contact, revy, "X-API-Key", "k"
	}
	req := httptest.NewRequest(http.MethodPatch, path, bytes.NewReader(patch))
	req.Header.Set(hdr, key)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// sandboxFields returns the contact's fields as the sandbox holds them, by
// lww field name; unset fields are "".
func sandboxFields(rt *rapid.T, target events.Target, contact string, skip *sandbox.Skipcall, revy *sandbox.RevyOps) map[string]string {
	out := map[string]string{}
	str := func(v any) string { s, _ := v.(string); return s }
	if target == events.TargetSkipcall {
		c, ok := skip.Contact(contact)
		if !ok {
			rt.Fatalf("no contact %s", contact)
		}
		out["firstName"], out["city"] = str(c["firstName"]), str(c["city"])
		if ps, _ := c["phoneNumbers"].([]any); len(ps) > 0 {
			out["phoneNumbers"] = str(ps[0])
		}
		cf, _ := c["customFields"].(map[string]any)
		for k, v := range cf {
			out[lww.SkipcallCustomFieldPrefix+k] = str(v)
		}
		return out
	}
	id, _ := strconv.ParseInt(contact, 10, 64)
	c, ok := revy.Contact(id)
	if !ok {
		rt.Fatalf("no contact %s", contact)
	}
	out["first_name"], out["last_name"], out["contact_status"] = str(c["first_name"]), str(c["last_name"]), str(c["contact_status"])
	items, _ := c["contact_custom_fields"].([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		out[lww.RevyOpsCustomFieldPrefix+str(m["field_name"])] = str(m["field_value"])
	}
	return out
}
