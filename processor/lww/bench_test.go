package lww_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
)

// benchPatch is a typical Skipcall event: a few fields, two custom fields.
var benchPatch = json.RawMessage(`{"firstName":"Ada","lastName":"Lovelace","city":"Paris","phoneNumbers":["+33612345678"],"customFields":{"industry":"Tech","tier":"gold"}}`)

// BenchmarkUnmarshalFloor decodes the patch into a map: the least any
// per-event look at the patch's fields costs, the floor Filter and Merge are
// compared with.
func BenchmarkUnmarshalFloor(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(benchPatch, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMergeSingle(b *testing.B) {
	b.ReportAllocs()
	c := lww.Change{Patch: benchPatch, Clock: at(1, "e1")}
	for b.Loop() {
		if _, _, err := lww.Merge(events.TargetSkipcall, c); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPatchLarge is the process mode's event: a ~1 KiB Skipcall patch of
// 13 fields, three of them custom, one a long string.
var benchPatchLarge = func() json.RawMessage {
	b, err := json.Marshal(map[string]any{
		"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "company": "Analytical Engines Ltd",
		"city": "London", "country": "United Kingdom", "role": "Chief Mathematician", "url": "https://example.com/ada",
		"linkedinUrl": "https://linkedin.com/in/ada", "allowPhoneCalls": true, "phoneNumbers": []string{"+442071234567", "+442079876543"},
		"customFields": map[string]string{"industry": "Computing", "team_size": "50-100", "notes": strings.Repeat("n", 380)},
	})
	if err != nil {
		panic(err)
	}
	return b
}()

// BenchmarkMergeSingleLarge is MergeSingle for the process mode's event:
// what the worker does for every event delivered alone.
func BenchmarkMergeSingleLarge(b *testing.B) {
	b.ReportAllocs()
	c := lww.Change{Patch: benchPatchLarge, Clock: at(1, "e1"), Valid: true}
	for b.Loop() {
		if _, _, err := lww.Merge(events.TargetSkipcall, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMerge10 coalesces 10 changes to one contact; reported per
// change (ns/op / 10 is the cost per event).
func BenchmarkMerge10(b *testing.B) {
	b.ReportAllocs()
	changes := make([]lww.Change, 10)
	for i := range changes {
		changes[i] = lww.Change{Patch: json.RawMessage(fmt.Sprintf(`{"city":"C%d","customFields":{"k%d":"v","tier":"t%d"},"firstName":"F%d"}`, i, i%3, i, i)), Clock: at(10-i, fmt.Sprint("e", i))}
	}
	for b.Loop() {
		if _, _, err := lww.Merge(events.TargetSkipcall, changes...); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFilterKeepAll(b *testing.B) {
	b.ReportAllocs()
	_, clocks, _ := lww.Merge(events.TargetSkipcall, lww.Change{Patch: benchPatch, Clock: at(10, "e")})
	st := lww.State{Fields: map[string]lww.Clock{"city": at(5, "x"), "customFields/tier": at(5, "x")}, Revision: 3}
	for b.Loop() {
		if _, _, _, err := lww.Filter(events.TargetSkipcall, benchPatch, clocks, st); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFilterDropSome(b *testing.B) {
	b.ReportAllocs()
	_, clocks, _ := lww.Merge(events.TargetSkipcall, lww.Change{Patch: benchPatch, Clock: at(10, "e")})
	st := lww.State{Fields: map[string]lww.Clock{"city": at(11, "x"), "customFields/tier": at(11, "x")}, Revision: 3}
	for b.Loop() {
		if _, _, d, err := lww.Filter(events.TargetSkipcall, benchPatch, clocks, st); err != nil || len(d) != 2 {
			b.Fatal(err, d)
		}
	}
}

// BenchmarkKVGetPutFloor is one KV Get and one Put on the embedded server:
// the two round trips Store.Get+Commit cannot avoid.
func BenchmarkKVGetPutFloor(b *testing.B) {
	js := natstest.JetStream(b)
	ctx := natstest.Context(b)
	newStore(b, js, lww.StoreConfig{})
	kv, err := js.KeyValue(ctx, lww.DefaultBucket)
	if err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 120)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("skipcall.c%d", i%1000)
		i++
		if _, err := kv.Get(ctx, key); err != nil && i > 1000 {
			b.Fatal(err)
		}
		if _, err := kv.Put(ctx, key, val); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreGetCommit is one event's state round trips: Get, then
// Commit of its fields' clocks and values, over 1000 contacts.
func BenchmarkStoreGetCommit(b *testing.B) {
	js := natstest.JetStream(b)
	ctx := natstest.Context(b)
	s := newStore(b, js, lww.StoreConfig{})
	_, clocks, _ := lww.Merge(events.TargetSkipcall, lww.Change{Patch: benchPatch, Clock: at(0, "e")})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := fmt.Sprintf("c%d", i%1000)
		applied := make(map[string]lww.Clock, len(clocks))
		for f := range clocks {
			applied[f] = at(i, fmt.Sprint("evt-", i)) // always newer: every Commit writes
		}
		i++
		st, err := s.Get(ctx, events.TargetSkipcall, c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(ctx, events.TargetSkipcall, c, st, benchPatch, applied); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodedSize reports the stored value's size for the bench patch's
// six fields from one event, and from six events.
func BenchmarkEncodedSize(b *testing.B) {
	js := natstest.JetStream(b)
	ctx := natstest.Context(b)
	s := newStore(b, js, lww.StoreConfig{})
	kv, _ := js.KeyValue(ctx, lww.DefaultBucket)
	names, _ := lww.Fields(events.TargetSkipcall, benchPatch)
	one, six := map[string]lww.Clock{}, map[string]lww.Clock{}
	for i, n := range names {
		one[n] = at(0, "0b7e4c6a-evt-00000001")
		six[n] = at(i, fmt.Sprintf("0b7e4c6a-evt-%08d", i))
	}
	sizes := map[string]int{}
	for name, applied := range map[string]map[string]lww.Clock{"one": one, "six": six} {
		if _, err := s.Commit(ctx, events.TargetSkipcall, name, lww.State{}, nil, applied); err != nil {
			b.Fatal(err)
		}
		e, err := kv.Get(ctx, "skipcall."+name)
		if err != nil {
			b.Fatal(err)
		}
		sizes[name] = len(e.Value())
	}
	for b.Loop() {
	}
	// After the loop: b.Loop's first call resets reported metrics.
	for name, n := range sizes {
		b.ReportMetric(float64(n), "bytes_"+name+"_clock")
	}
}
