package app

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestProductionBinariesStayLean: cmd/ingest and cmd/worker link only what
// production runs. Dev mode, the sandboxes (and kin-openapi, which validates
// their traffic), the embedded NATS server and the load harness are reached
// only from cmd/patchbay; the worker's package does not carry the clients'
// HTTP helpers.
func TestProductionBinariesStayLean(t *testing.T) {
	forbidden := []string{
		"github.com/nats-io/nats-server/",
		"github.com/getkin/kin-openapi/",
		"github.com/patchbay/patchbay/sandbox",
		"github.com/patchbay/patchbay/stream/embedded",
		"github.com/patchbay/patchbay/processor/openapi",
		"github.com/patchbay/patchbay/internal/dev",
		"github.com/patchbay/patchbay/internal/perf",
		"github.com/patchbay/patchbay/internal/proc",
		"github.com/patchbay/patchbay/internal/pbtest",
	}
	deps := func(pkg string) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for _, cmd := range []string{"../../cmd/ingest", "../../cmd/worker"} {
		for _, d := range deps(cmd) {
			for _, f := range forbidden {
				if d == f || strings.HasPrefix(d, f) {
					t.Errorf("%s links %s", cmd, d)
				}
			}
		}
	}
	// The all-in-one binary still has everything.
	all := strings.Join(deps("../../cmd/patchbay"), " ")
	for _, want := range []string{"github.com/nats-io/nats-server/v2/server", "github.com/patchbay/patchbay/sandbox", "github.com/patchbay/patchbay/internal/perf"} {
		if !strings.Contains(all, want) {
			t.Errorf("cmd/patchbay no longer links %s", want)
		}
	}
	for _, d := range deps("../../processor") {
		if d == "github.com/patchbay/patchbay/processor/httpcall" {
			t.Error("processor imports processor/httpcall: the clients' HTTP helpers belong to the clients")
		}
	}
}
