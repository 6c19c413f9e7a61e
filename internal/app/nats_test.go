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
	"github.com/nats-io/nats.go"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor/revyops"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/redact"
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

// TestCleanCloseIsNotAWarning: closing the connection ourselves (a normal
// shutdown) is logged at debug level, not as "WARN NATS disconnected
// err=<nil>"; a lost server is still a warning (see
// TestNATSTokenNotLoggedOnReconnect).
func TestCleanCloseIsNotAWarning(t *testing.T) {
	emb := natstest.Server(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nc, _, err := Connect(natstest.Context(t), log, pbtest.StreamConfig(emb.ClientURL()), "clean-close-test")
	if err != nil {
		t.Fatal(err)
	}
	// The disconnect callback runs on the client's callback goroutine
	// before the closed one.
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	nc.Close()
	select {
	case <-closed:
	case <-natstest.Context(t).Done():
		t.Fatal("the closed handler never ran")
	}
	if l := logs.String(); strings.Contains(l, "level=WARN") || !strings.Contains(l, "NATS connection closed") {
		t.Fatalf("a clean close logged:\n%s", l)
	}
}

// TestWorkerShutdownLogsNoWarning: a worker stopped the normal way logs no
// warning: neither the connection's own close nor the rate budgets'
// watches losing the draining connection.
func TestWorkerShutdownLogsNoWarning(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	cfg := WorkerConfig{
		Stream: s.Stream, Worker: pbtest.WorkerConfig(),
		RevyOps:  revyops.Config{BaseURL: s.RevyURL, APIKey: redact.Secret(pbtest.RevyOpsKey), AuthHeader: "X-API-Key", AuthFormat: "%s", Timeout: 2 * time.Second},
		Skipcall: skipcall.Config{BaseURL: s.SkipURL, APIKey: redact.Secret(pbtest.SkipcallKey), Timeout: 2 * time.Second},
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(natstest.Context(t))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunWorker(ctx, log, cfg) }()
	pbtest.Eventually(t, 30*time.Second, "the worker's consumers", func() bool {
		for _, target := range []string{"revyops", "skipcall"} {
			if _, err := s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.TargetConsumer(target)); err != nil {
				return false
			}
		}
		return true
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
		t.Fatalf("a normal shutdown logged a warning:\n%s", l)
	}
}
