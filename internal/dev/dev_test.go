package dev

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/patchbay/patchbay/internal/app"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/internal/proc"
)

// TestDevModeAppliesAnEvent runs the README's first command in-process with
// its defaults (ports moved to free ones) and follows an event from ingest
// to the sandbox, as the README's curl example does.
func TestDevModeAppliesAnEvent(t *testing.T) {
	for _, k := range []string{"PATCHBAY_NATS_URL", "PATCHBAY_INGEST_TOKENS"} {
		t.Setenv(k, "")
	}
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	dev := DevConfig{}
	if err := envconfig.Process("patchbay_dev", &dev); err != nil {
		t.Fatal(err)
	}
	cfg, err := app.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	free := func() string {
		a, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	dev.DataDir = t.TempDir()
	dev.NATSPort = -1
	dev.IngestAddr, dev.RevyOpsAddr, dev.SkipcallAddr, dev.AdminAddr = free(), free(), free(), free()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunDev(ctx, pbtest.Logger(t), dev, cfg.Worker, cfg.Ingest) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunDev: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("dev mode did not stop within 30s of cancellation")
		}
		if _, _, err := app.FindDev(); !errors.Is(err, app.ErrNoDev) {
			t.Errorf("dev stopped but its record is still found: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := proc.WaitHTTP(wctx, "http://"+dev.IngestAddr+"/readyz", 200); err != nil {
		t.Fatal(err)
	}
	if err := proc.WaitHTTP(wctx, "http://"+dev.AdminAddr+"/metrics", 200); err != nil {
		t.Fatalf("dev admin listener: %v", err)
	}
	// Operator commands find this dev without PATCHBAY_NATS_URL.
	info, _, err := app.FindDev()
	if err != nil {
		t.Fatal(err)
	}
	if info.IngestAddr != dev.IngestAddr || info.AdminAddr != dev.AdminAddr || info.SkipcallAddr != dev.SkipcallAddr || info.RevyOpsAddr != dev.RevyOpsAddr {
		t.Errorf("dev recorded %+v, listens on %+v", info, dev)
	}
	nc, _, err := app.Connect(wctx, pbtest.Logger(t), cfg.Worker.Stream, "dev-test-operator")
	if err != nil {
		t.Fatalf("an operator command beside dev: %v", err)
	}
	if nc.ConnectedUrl() != info.NATSURL {
		t.Errorf("connected to %s, dev's NATS is %s", nc.ConnectedUrl(), info.NATSURL)
	}
	nc.Close()
	// Dev mode keeps pprof on its loopback admin listener.
	for _, path := range []string{"/debug/pprof/", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + dev.AdminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("dev admin %s: %d", path, resp.StatusCode)
		}
	}
	body := `{"id":"evt-0001","target":"skipcall","contact_id":"0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c",
	  "occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":"Ada","city":"Paris"}}`
	req, _ := http.NewRequest(http.MethodPost, "http://"+dev.IngestAddr+"/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+dev.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	pbtest.Eventually(t, 15*time.Second, "contact visible at the sandbox", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+dev.SkipcallAddr+"/v1/contacts/0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c", nil)
		req.Header.Set("Authorization", "Bearer "+DevSkipcallKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.Contains(string(b), `"firstName":"Ada"`) && strings.Contains(string(b), `"city":"Paris"`)
	})
}
