package stream

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
)

// BenchmarkPublishBatch100 stores batches of 100 messages with ids, waiting
// for every PubAck: with the Publisher (Publish, and PublishEncoded, which
// ingest uses), and with jetstream's PublishMsgAsync as ingest did before
// it (the floor, in the same run).
func BenchmarkPublishBatch100(b *testing.B) {
	js := natstest.JetStream(b)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Duplicates: time.Minute}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 1024)
	n := 0
	batch := func() []*nats.Msg {
		msgs := make([]*nats.Msg, 100)
		for i := range msgs {
			n++
			msgs[i] = &nats.Msg{Subject: "s.a", Data: data, Header: nats.Header{jetstream.MsgIDHeader: {strconv.Itoa(n)}}}
		}
		return msgs
	}
	b.Run("publisher", func(b *testing.B) {
		p, err := NewPublisher(js.Conn())
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Publish(ctx, batch()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("publish-encoded", func(b *testing.B) {
		p, err := NewPublisher(js.Conn())
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		msgs := make([]Message, 100)
		b.ReportAllocs()
		for b.Loop() {
			for i := range msgs {
				n++
				msgs[i] = Message{Subject: "s.a", ID: strconv.Itoa(n)}
			}
			if _, err := p.PublishEncoded(ctx, "S", msgs, func(_ int, buf []byte) ([]byte, error) { return append(buf, data...), nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jetstream-async", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			msgs := batch()
			futures := make([]jetstream.PubAckFuture, len(msgs))
			for i, m := range msgs {
				f, err := js.PublishMsgAsync(m)
				if err != nil {
					b.Fatal(err)
				}
				futures[i] = f
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkPublishOne stores one message at a time, waiting for its PubAck,
// as lww.Store.Commit does: with PublishMsg and with Publish of a slice of
// one.
func BenchmarkPublishOne(b *testing.B) {
	js := natstest.JetStream(b)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64)
	p, err := NewPublisher(js.Conn())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.Run("publish-msg", func(b *testing.B) {
		m := &nats.Msg{Subject: "s.a", Data: data}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.PublishMsg(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("publish", func(b *testing.B) {
		m := &nats.Msg{Subject: "s.a", Data: data}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Publish(ctx, []*nats.Msg{m}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
