package app

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestAddressInUseNamesDevAndVariable: ingest started on an address a
// running 'patchbay dev' holds fails at once, saying that dev holds it and
// which variable moves ours; held by anything else, it names the variable.
func TestAddressInUseNamesDevAndVariable(t *testing.T) {
	devDir(t)
	emb := natstest.Server(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, port, _ := net.SplitHostPort(held.Addr().String())
	cfg := IngestConfig{Stream: pbtest.StreamConfig(""), Ingest: pbtest.IngestConfig()}
	// The production default form, a wildcard host (":8080"), collides with
	// dev's loopback listener.
	cfg.Ingest.Addr = ":" + port
	cfg.Ingest.AdminAddr = ""
	run := func() error {
		return RunIngest(natstest.Context(t), slog.New(slog.DiscardHandler), cfg, nil)
	}

	err = run()
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("RunIngest on a taken port: %v", err)
	}
	for _, s := range []string{"another process", "PATCHBAY_INGEST_ADDR"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}

	if err := WriteDevInfo(DevInfo{PID: os.Getpid(), NATSURL: emb.ClientURL(), IngestAddr: held.Addr().String(), AdminAddr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	err = run()
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("RunIngest on dev's port: %v", err)
	}
	for _, s := range []string{"'patchbay dev' (pid " + strconv.Itoa(os.Getpid()) + ")", "for its ingest", "PATCHBAY_INGEST_ADDR"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

func TestSameListenAddr(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{":8080", "127.0.0.1:8080", true},
		{"0.0.0.0:9090", "127.0.0.1:9090", true},
		{"localhost:9090", "127.0.0.1:9090", true},
		{"127.0.0.1:9090", "127.0.0.1:9090", true},
		{"127.0.0.1:9091", "127.0.0.1:9090", false},
		{"10.0.0.7:8080", "127.0.0.1:8080", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"", "127.0.0.1:8080", false},
	}
	for _, tc := range cases {
		if got := sameListenAddr(tc.a, tc.b); got != tc.want {
			t.Errorf("sameListenAddr(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
