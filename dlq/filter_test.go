package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestFiltersReturnExactlyTheMatchingSet publishes letters of several
// reasons, targets, statuses, codes, contacts and times, and checks that
// List (over pages of 7), Summary, Purge's dry run and Replay's dry run
// return exactly the letters each filter matches, newest first.
func TestFiltersReturnExactlyTheMatchingSet(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	pub := dlq.NewPublisher(s.JS, s.Stream.SubjectPrefix)
	type spec struct {
		reason  dlq.Reason
		target  string
		contact string
		status  int
		code    string
	}
	kinds := []spec{
		{dlq.ReasonRejected, "skipcall", "c1", 400, "VALIDATION_ERROR"},
		{dlq.ReasonRejected, "skipcall", "c2", 404, "NOT_FOUND"},
		{dlq.ReasonRejected, "revyops", "42", 400, ""},
		{dlq.ReasonExhausted, "revyops", "43", 503, ""},
		{dlq.ReasonExhausted, "skipcall", "c1", 0, ""},
		{dlq.ReasonInvalid, "skipcall", "c3", 0, ""},
	}
	var all []dlq.Letter // as published, with the batch each belongs to
	var batchEnds []time.Time
	seq := uint64(0)
	for batch := range 3 {
		for _, k := range kinds {
			seq++
			l := dlq.Letter{Reason: k.reason, Target: k.target, Status: k.status, ErrorCode: k.code, Attempts: 1,
				Stream: s.Stream.EventsStream, StreamSeq: seq, Subject: "contacts.patch." + k.target + "." + k.contact,
				EventID: fmt.Sprintf("evt-%d-%d", batch, seq), Data: []byte(`{}`)}
			if err := pub.Publish(ctx, l); err != nil {
				t.Fatal(err)
			}
			l.DLQSeq = seq
			all = append(all, l)
		}
		batchEnds = append(batchEnds, time.Now())
	}
	store := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix)
	cases := []struct {
		name string
		f    dlq.Filter
		want func(i int, l dlq.Letter) bool
	}{
		{"all", dlq.Filter{}, func(int, dlq.Letter) bool { return true }},
		{"target", dlq.Filter{Target: "revyops"}, func(_ int, l dlq.Letter) bool { return l.Target == "revyops" }},
		{"contact", dlq.Filter{ContactID: "c1"}, func(_ int, l dlq.Letter) bool { return l.ContactID() == "c1" }},
		{"target and contact", dlq.Filter{Target: "skipcall", ContactID: "c1"}, func(_ int, l dlq.Letter) bool { return l.ContactID() == "c1" }},
		{"reason", dlq.Filter{Reason: dlq.ReasonExhausted}, func(_ int, l dlq.Letter) bool { return l.Reason == dlq.ReasonExhausted }},
		{"status", dlq.Filter{Status: 400}, func(_ int, l dlq.Letter) bool { return l.Status == 400 }},
		{"code", dlq.Filter{ErrorCode: "NOT_FOUND"}, func(_ int, l dlq.Letter) bool { return l.ErrorCode == "NOT_FOUND" }},
		{"reason and target", dlq.Filter{Reason: dlq.ReasonRejected, Target: "skipcall"}, func(_ int, l dlq.Letter) bool {
			return l.Reason == dlq.ReasonRejected && l.Target == "skipcall"
		}},
		{"since", dlq.Filter{Since: batchEnds[0]}, func(i int, _ dlq.Letter) bool { return i >= len(kinds) }},
		{"until", dlq.Filter{Until: batchEnds[0]}, func(i int, _ dlq.Letter) bool { return i < len(kinds) }},
		{"time range and status", dlq.Filter{Since: batchEnds[0], Until: batchEnds[1], Status: 400}, func(i int, l dlq.Letter) bool {
			return i >= len(kinds) && i < 2*len(kinds) && l.Status == 400
		}},
		{"nothing", dlq.Filter{Target: "revyops", ErrorCode: "NOT_FOUND"}, func(int, dlq.Letter) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want []uint64
			for i, l := range all {
				if tc.want(i, l) {
					want = append(want, l.DLQSeq)
				}
			}
			slices.Reverse(want) // newest first
			var got []uint64
			page := dlq.Page{Limit: 7}
			for pages := 0; ; pages++ {
				res, err := store.List(ctx, tc.f, page)
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range res.Letters {
					got = append(got, l.DLQSeq)
				}
				if res.Next == 0 {
					break
				}
				if pages > len(all) {
					t.Fatal("List pages never end")
				}
				page.Before = res.Next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("List gave %v, want %v", got, want)
			}
			sum, err := store.Summary(ctx, tc.f)
			if err != nil || sum.Total != len(want) {
				t.Fatalf("Summary total %d (err %v), want %d", sum.Total, err, len(want))
			}
			if tc.f.IsZero() {
				return
			}
			pr, err := store.Purge(ctx, dlq.Selection{Filter: tc.f}, dlq.PurgeOptions{DryRun: true})
			slices.Reverse(pr.Seqs)
			if err != nil || !slices.Equal(pr.Seqs, want) {
				t.Fatalf("Purge dry run selected %v (err %v), want %v", pr.Seqs, err, want)
			}
		})
	}
	sum, err := store.Summary(ctx, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.ByReason[dlq.ReasonRejected] != 9 || sum.ByTarget["revyops"] != 6 || len(sum.Counts) != 5 {
		t.Fatalf("summary %+v: want 9 rejected, 6 at revyops, 5 (reason, target) pairs", sum)
	}
	if _, err := store.List(ctx, dlq.Filter{Reason: "nope"}, dlq.Page{}); !errors.Is(err, dlq.ErrBadRequest) {
		t.Fatalf("unknown reason: %v, want ErrBadRequest", err)
	}
	if n := s.StreamMsgs(s.Stream.DLQStream); n != uint64(len(all)) {
		t.Fatalf("dry runs deleted letters: %d left of %d", n, len(all))
	}
	// Purge older than the first batch's end deletes exactly that batch.
	pr, err := store.Purge(ctx, dlq.Selection{Filter: dlq.Filter{Until: batchEnds[0]}}, dlq.PurgeOptions{})
	if err != nil || pr.Purged != len(kinds) || s.StreamMsgs(s.Stream.DLQStream) != uint64(2*len(kinds)) {
		t.Fatalf("purge older than batch 1: %+v, %v", pr, err)
	}
}
