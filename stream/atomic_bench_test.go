package stream

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
)

// BenchmarkClockWrites100 measures what a worker pays to store 100
// compare-and-set writes (one per contact, as lww.Store.Commit does) on a
// file-backed KV stream, in two ways: through the Publisher, one PubAck
// per write, and as one JetStream atomic batch (nats-server 2.12+, one
// PubAck for the batch). Server and client share the process, so ns/op
// is the CPU of both. It is the measurement behind keeping one write per
// commit: on file storage the server stages an atomic batch in a store of
// its own before it commits, so the batch is not cheaper.
func BenchmarkClockWrites100(b *testing.B) {
	js := natstest.JetStream(b)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "KV_B", Subjects: []string{"$KV.B.>"}, MaxMsgsPerSubject: 1,
		Storage: jetstream.FileStorage, AllowDirect: true, AllowAtomicPublish: true,
	}); err != nil {
		b.Fatal(err)
	}
	value := []byte(`{"email":[1764590000000000000,"evt-1"]}`)
	n := 0
	batch := func() []*nats.Msg {
		msgs := make([]*nats.Msg, 100)
		for i := range msgs {
			n++
			msgs[i] = &nats.Msg{Subject: "$KV.B.skipcall.c" + strconv.Itoa(n), Data: value,
				Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: {"0"}}}
		}
		return msgs
	}
	b.Run("publisher", func(b *testing.B) {
		p, err := NewPublisher(js.Conn())
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		for b.Loop() {
			if _, err := p.Publish(ctx, batch()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("atomic-batch", func(b *testing.B) {
		nc := js.Conn()
		id := 0
		for b.Loop() {
			id++
			msgs := batch()
			for i, m := range msgs {
				m.Header.Set("Nats-Batch-Id", "b"+strconv.Itoa(id))
				m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
				if i < len(msgs)-1 {
					if err := nc.PublishMsg(m); err != nil {
						b.Fatal(err)
					}
					continue
				}
				m.Header.Set("Nats-Batch-Commit", "1")
				resp, err := nc.RequestMsg(m, 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				var ack struct {
					Count int `json:"count"`
					Error *struct {
						Description string `json:"description"`
					} `json:"error"`
				}
				if err := json.Unmarshal(resp.Data, &ack); err != nil || ack.Error != nil || ack.Count != len(msgs) {
					b.Fatalf("batch not stored: %s (%v)", resp.Data, err)
				}
			}
		}
	})
}
