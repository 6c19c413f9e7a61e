package app

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/internal/proc"
)

// devDir points the dev file at a directory of the test's own.
func devDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	return dir
}

// deadPID is the pid of a process that has exited: a run of this test
// binary that runs no test.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestConnectFindsRunningDev: with PATCHBAY_NATS_URL unset, Connect uses
// the NATS URL a running dev recorded (this process plays the dev) and
// logs that it did.
func TestConnectFindsRunningDev(t *testing.T) {
	dir := devDir(t)
	emb := natstest.Server(t)
	want := DevInfo{PID: os.Getpid(), NATSURL: emb.ClientURL(), IngestAddr: "127.0.0.1:1", AdminAddr: "127.0.0.1:2",
		RevyOpsAddr: "127.0.0.1:3", SkipcallAddr: "127.0.0.1:4", StartedAt: time.Now().UTC().Truncate(time.Second)}
	if err := WriteDevInfo(want); err != nil {
		t.Fatal(err)
	}
	got, path, err := FindDev()
	if err != nil {
		t.Fatal(err)
	}
	if got != want || path != filepath.Join(dir, "patchbay", "dev.json") {
		t.Fatalf("FindDev = %+v at %s, want %+v", got, path, want)
	}

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	nc, _, err := Connect(context.Background(), log, pbtest.StreamConfig(""), "devfile-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.ConnectedUrl() != emb.ClientURL() {
		t.Errorf("connected to %s, dev's server is %s", nc.ConnectedUrl(), emb.ClientURL())
	}
	if !strings.Contains(logs.String(), "using the running 'patchbay dev'") || !strings.Contains(logs.String(), path) {
		t.Errorf("Connect did not say it used dev's server:\n%s", logs.String())
	}

	// A dev that stops removes its record; another pid's removal does not.
	if err := RemoveDevInfo(os.Getpid() + 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := FindDev(); err != nil {
		t.Fatalf("another pid removed the record: %v", err)
	}
	if err := RemoveDevInfo(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := FindDev(); !errors.Is(err, ErrNoDev) {
		t.Fatalf("after removal FindDev: %v", err)
	}
}

// TestConnectIgnoresStaleDevFile: a record left by a dev that was killed
// (its pid gone, or a live pid with nothing at its NATS address) is not
// used: Connect fails without trying it (an error wrapping ErrNoDev, not a
// connect timeout) and names the variable to set.
func TestConnectIgnoresStaleDevFile(t *testing.T) {
	devDir(t)
	emb := natstest.Server(t)
	free, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		info DevInfo
		says string
	}{
		{"no file", DevInfo{}, "no "},
		{"process gone", DevInfo{PID: deadPID(t), NATSURL: emb.ClientURL()}, "no longer running"},
		{"nothing listening", DevInfo{PID: os.Getpid(), NATSURL: "nats://" + free}, "nothing listens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.info.PID != 0 {
				if err := WriteDevInfo(tc.info); err != nil {
					t.Fatal(err)
				}
			}
			nc, _, err := Connect(natstest.Context(t), slog.New(slog.DiscardHandler), pbtest.StreamConfig(""), "devfile-test")
			if err == nil {
				nc.Close()
				t.Fatal("Connect used a stale dev record")
			}
			if !errors.Is(err, ErrNoDev) {
				t.Fatalf("error does not wrap ErrNoDev: %v", err)
			}
			for _, s := range []string{"PATCHBAY_NATS_URL", tc.says} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if tc.info.PID != 0 && !strings.Contains(err.Error(), strconv.Itoa(tc.info.PID)) && !strings.Contains(err.Error(), free) {
				t.Errorf("error %q names neither the pid nor the address", err)
			}
		})
	}
}
