// Package natstest starts embedded JetStream servers and their clients for
// tests, each stopped or closed at the test's cleanup.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream/embedded"
)

// Server runs an embedded JetStream server on loopback, stopped at cleanup.
func Server(t testing.TB) *embedded.Server {
	t.Helper()
	emb, err := embedded.Run(embedded.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	return emb
}

// Connect opens a connection of its own on emb (as a replica would have),
// closed at cleanup. It reconnects without end and buffers nothing while
// disconnected, as patchbay's services do, so a test may stop and restart
// the server under it.
func Connect(t testing.TB, emb *embedded.Server, name string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(emb.ClientURL(), nats.Name(name), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// JetStream runs a server for the test and returns a client on it.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	return Connect(t, Server(t), t.Name())
}

// Context is a context ending a little before the test's deadline, and at
// most two minutes from now.
func Context(t testing.TB) context.Context {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := tt.Deadline(); ok && d.Add(-5*time.Second).Before(deadline) {
			deadline = d.Add(-5 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}
