package app

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// syncBuffer is a log sink safe for the NATS client's callback goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNATSTokenNotLoggedOnReconnect: with a token in the NATS URL, the
// disconnect and reconnect lines name the server without the token (the
// client's own ConnectedUrlRedacted masks passwords only).
func TestNATSTokenNotLoggedOnReconnect(t *testing.T) {
	const secret = "t0ken-secret-on-reconnect"
	port := -1
	dir := t.TempDir()
	start := func() *server.Server {
		srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
			NoSigs: true, NoLog: true, Authorization: secret})
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatal("NATS not ready")
		}
		return srv
	}
	srv := start()
	port = srv.Addr().(*net.TCPAddr).Port

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	scfg := pbtest.StreamConfig(fmt.Sprintf("nats://%s@127.0.0.1:%d", secret, port))
	nc, _, err := Connect(context.Background(), log, scfg, "reconnect-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = start()
	defer srv.Shutdown()
	pbtest.Eventually(t, 30*time.Second, "the client reconnected and logged it", func() bool {
		return strings.Contains(logs.String(), "NATS reconnected")
	})
	if !strings.Contains(logs.String(), "NATS disconnected") {
		t.Errorf("no disconnect line:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatalf("token in the logs:\n%s", logs.String())
	}
}
