package lww_test

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"testing"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
)

// TestCommitReportsOverwrittenFields: a delivery read the state, another
// replica then committed a newer city; the delivery's PATCH (an older city
// and a company) has overwritten that city at the provider. Commit keeps
// the newer clock, stores the company, reports city as overwritten and
// marks it pending; the next Filter puts the newer city (stored value and
// clock) into the PATCH, even for an event whose own fields are all older,
// and that PATCH's Commit clears the mark.
func TestCommitReportsOverwrittenFields(t *testing.T) {
	bothWritePaths(t, testCommitReportsOverwrittenFields)
}

func testCommitReportsOverwrittenFields(t *testing.T) {
	ctx := natstest.Context(t)
	s := newStore(t, natstest.JetStream(t), lww.StoreConfig{})
	const contact = "b1b1b1b1-2222-4333-8444-555555555555"
	tgt := events.TargetSkipcall
	read, err := s.Get(ctx, tgt, contact)
	if err != nil {
		t.Fatal(err)
	}
	newer := json.RawMessage(`{"city":"Newer"}`)
	if ow, err := s.Commit(ctx, tgt, contact, read, newer, map[string]lww.Clock{"city": at(20, "new")}); err != nil || len(ow.Fields)+len(ow.Unknown) != 0 {
		t.Fatalf("the newer commit: %+v, %v", ow, err)
	}
	older := json.RawMessage(`{"city":"Older","company":"Acme"}`)
	ow, err := s.Commit(ctx, tgt, contact, read, older, map[string]lww.Clock{"city": at(10, "old"), "company": at(10, "old")})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ow.Fields, []string{"city"}) || len(ow.Unknown) != 0 {
		t.Fatalf("overwritten %+v, want city", ow)
	}
	st, err := s.Get(ctx, tgt, contact)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Fields["city"].Equal(at(20, "new")) || string(st.Values["city"]) != `"Newer"` || string(st.Values["company"]) != `"Acme"` {
		t.Fatalf("state after the older commit: %v values %s", st.Fields, st.Values)
	}
	if !slices.Equal(st.Pending, []string{"city"}) {
		t.Fatalf("pending %v, want city", st.Pending)
	}
	if st.Fields["city"].Applied.IsZero() {
		t.Error("the newer clock has no applied time")
	}

	// The events' redelivery: their city is older, yet the PATCH carries
	// the newer one.
	patch, clocks, err := lww.Merge(tgt, lww.Change{Patch: older, Clock: at(10, "old")})
	if err != nil {
		t.Fatal(err)
	}
	if !lww.AnyStale(clocks, st) {
		t.Fatal("AnyStale ignores the pending field")
	}
	kept, keptClocks, dropped, err := lww.Filter(tgt, patch, clocks, st)
	if err != nil {
		t.Fatal(err)
	}
	if string(kept) != `{"city":"Newer"}` || !keptClocks["city"].Equal(at(20, "new")) || len(keptClocks) != 1 || !slices.Equal(dropped, []string{"city", "company"}) {
		t.Fatalf("repair PATCH %s clocks %v dropped %v; want the newer city alone", kept, keptClocks, dropped)
	}
	if ow, err := s.Commit(ctx, tgt, contact, st, kept, keptClocks); err != nil || len(ow.Fields) != 0 {
		t.Fatalf("the repair's commit: %+v, %v", ow, err)
	}
	st, err = s.Get(ctx, tgt, contact)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pending) != 0 || !st.Fields["city"].Equal(at(20, "new")) {
		t.Fatalf("after the repair: pending %v, city %v", st.Pending, st.Fields["city"])
	}
	if _, _, d, _ := lww.Filter(tgt, patch, clocks, st); !slices.Equal(d, []string{"city", "company"}) {
		t.Fatalf("after the repair the old event is not wholly superseded: dropped %v", d)
	}
}

// TestCommitOverVersion1RecordCannotRepair: a record written by a version
// that kept clocks only has no value to send again: Commit reports the
// overwritten field as Unknown, marks nothing, and stores the new record
// (version 2) with the old clocks kept.
func TestCommitOverVersion1RecordCannotRepair(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	s := newStore(t, js, lww.StoreConfig{})
	kv, err := js.KeyValue(ctx, lww.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Version 1: one clock (occurred_at 20 s after at's base, id "new"),
	// one field "city".
	c := at(20, "new")
	v1 := []byte{1}
	v1 = binary.AppendUvarint(v1, 1)
	v1 = binary.AppendVarint(v1, c.At.Unix())
	v1 = binary.AppendUvarint(v1, uint64(c.At.Nanosecond()))
	v1 = binary.AppendUvarint(v1, uint64(len(c.ID)))
	v1 = append(v1, c.ID...)
	v1 = binary.AppendUvarint(v1, 1)
	v1 = binary.AppendUvarint(v1, 4)
	v1 = append(v1, "city"...)
	v1 = binary.AppendUvarint(v1, 0)
	if _, err := kv.Put(ctx, "revyops.7", v1); err != nil {
		t.Fatal(err)
	}
	st, err := s.Get(ctx, events.TargetRevyOps, "7")
	if err != nil || !st.Fields["city"].Equal(c) || st.Values["city"] != nil {
		t.Fatalf("version 1 read: %v %s, %v", st.Fields, st.Values, err)
	}
	ow, err := s.Commit(ctx, events.TargetRevyOps, "7", lww.State{}, json.RawMessage(`{"city":"Old","email":"a@b.c"}`),
		map[string]lww.Clock{"city": at(10, "old"), "email": at(10, "old")})
	if err != nil {
		t.Fatal(err)
	}
	if len(ow.Fields) != 0 || !slices.Equal(ow.Unknown, []string{"city"}) {
		t.Fatalf("overwritten %+v, want city unknown", ow)
	}
	e, err := kv.Get(ctx, "revyops.7")
	if err != nil || e.Value()[0] != 2 {
		t.Fatalf("record after the commit: %v, %v", e, err)
	}
	st, err = s.Get(ctx, events.TargetRevyOps, "7")
	if err != nil || !st.Fields["city"].Equal(c) || len(st.Pending) != 0 || string(st.Values["email"]) != `"a@b.c"` {
		t.Fatalf("after the commit: %v %s pending %v, %v", st.Fields, st.Values, st.Pending, err)
	}
}
