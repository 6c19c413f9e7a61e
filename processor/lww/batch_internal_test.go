package lww

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchbay/patchbay/internal/natstest"
)

// TestBatchRepliesAreBufferedWhole guards route's buffer: every reply of a
// batch (an entry per key and the end-of-batch status), a full one or a
// small one, fits in the batch's channel before its reader takes any, so
// route drops none of a batch's own replies while multi is slow to read
// them.
func TestBatchRepliesAreBufferedWhole(t *testing.T) {
	r := &reader{sub: new(nats.Subscription), inbox: "_INBOX.test", batches: map[string]chan *nats.Msg{}}
	for _, n := range []int{1, 3, maxBatch} {
		replies, token, err := r.open(n)
		if err != nil {
			t.Fatal(err)
		}
		for range n + 1 {
			r.route(&nats.Msg{Subject: r.inbox + "." + token})
		}
		if got := len(replies); got != n+1 {
			t.Fatalf("%d of a batch of %d keys' %d replies buffered, want all", got, n, n+1)
		}
		r.close(token)
	}
	_, token, err := r.open(maxBatch)
	if err != nil {
		t.Fatal(err)
	}
	r.close(token)
	r.route(&nats.Msg{Subject: r.inbox + "." + token}) // a closed batch's reply is dropped, not a panic
	if _, other, err := r.open(1); err != nil || other == token {
		t.Fatalf("next batch token %q (err %v), want one other than %q", other, err, token)
	}
}

// TestBatchEndSaysWhetherItIsWhole guards how multi reads the end of a
// batch (status 204): the keys found so far are the answer when nothing is
// left pending (Nats-Num-Pending 0, or no such header), and an error when
// the server cut the batch short, so the caller reads the keys one by one
// instead of taking missing keys for keys without an entry.
func TestBatchEndSaysWhetherItIsWhole(t *testing.T) {
	nc := natstest.JetStream(t).Conn()
	// A fake direct-get responder: one entry, then the end of the batch
	// with the pending count the case sets ("-" for no header).
	var pending atomic.Value
	sub, err := nc.Subscribe("$JS.API.DIRECT.GET.KV_FAKE", func(m *nats.Msg) {
		entry := nats.NewMsg(m.Reply)
		entry.Header.Set("Nats-Subject", "$KV.FAKE.revyops.1")
		entry.Header.Set("Nats-Sequence", "3")
		entry.Data = []byte("{}")
		_ = nc.PublishMsg(entry)
		end := nats.NewMsg(m.Reply)
		end.Header.Set("Status", "204")
		if np := pending.Load().(string); np != "-" {
			end.Header.Set("Nats-Num-Pending", np)
		}
		_ = nc.PublishMsg(end)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	r := &reader{nc: nc, stream: "KV_FAKE", prefix: "$KV.FAKE."}
	batch := []*call{{key: "revyops.1"}, {key: "revyops.2"}}
	for _, tc := range []struct {
		pending string
		whole   bool
	}{{"0", true}, {"-", true}, {"5", false}} {
		pending.Store(tc.pending)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		found, err := r.multi(ctx, batch)
		cancel()
		switch {
		case tc.whole && (err != nil || len(found) != 1 || found["$KV.FAKE.revyops.1"] == nil):
			t.Errorf("Nats-Num-Pending %s: multi = %v, %v; want the one entry found", tc.pending, found, err)
		case !tc.whole && err == nil:
			t.Errorf("Nats-Num-Pending %s: multi = %v, nil; want an error (batch cut short)", tc.pending, found)
		}
	}
}

// TestMultiLastRequestIsJSONMarshal: the batched read's request is, byte
// for byte, what encoding/json writes for it, for KV subjects and for
// subjects it must escape.
func TestMultiLastRequestIsJSONMarshal(t *testing.T) {
	for _, subjects := range [][]string{
		nil, {}, {"$KV.PATCHBAY_LWW.skipcall.0b6c7c8e-6f1d-4a53-9d6e-2f4f5e9c1a01"},
		{"$KV.B.revyops.1", "$KV.B.revyops.22", "$KV.B.skipcall.a=b/c_d-e"},
		{"a\"b"}, {"a\\b"}, {"<&>"}, {"tab\there"}, {"é"}, {"ok", "\u2028"}, {"x", "\x7f"},
	} {
		want, err := json.Marshal(struct {
			MultiLast []string `json:"multi_last"`
		}{subjects})
		if err != nil {
			t.Fatal(err)
		}
		got, err := multiLastRequest(subjects)
		if err != nil || string(got) != string(want) {
			t.Errorf("multiLastRequest(%q) = %s, %v; json.Marshal writes %s", subjects, got, err, want)
		}
	}
}
