package ratelimit

import (
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/prometheus/client_golang/prometheus"
)

// gauge returns the value of the gauge name for target in reg, and whether
// it is there.
func gauge(t *testing.T, reg *prometheus.Registry, name, target string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "target" && l.GetValue() == target {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// TestMetrics: the gauges follow a credentials pause set by another
// replica, and Close unregisters them.
func TestMetrics(t *testing.T) {
	emb := natstest.Server(t)
	cfg := testConfig(10, 4*time.Second)
	bs := replicas(t, emb, 1, cfg)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	watched, err := New(testContext(t), natstest.Connect(t, emb, "metrics"), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if v, ok := gauge(t, reg, "patchbay_ratelimit_paused", "skipcall"); !ok || v != 0 {
		t.Fatalf("paused gauge before any pause: %v %v", v, ok)
	}
	g, err := bs[0].TryTake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bs[0].CredentialsFailed(ctx, g, "HTTP 401"); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the gauge showing the pause", func() bool {
		v, _ := gauge(t, reg, "patchbay_ratelimit_paused", "skipcall")
		return v == 1
	})
	if v, _ := gauge(t, reg, "patchbay_ratelimit_credential_failures", "skipcall"); v != 1 {
		t.Fatalf("credential failures gauge %v, want 1", v)
	}
	if v, _ := gauge(t, reg, "patchbay_ratelimit_pause_remaining_seconds", "skipcall"); v <= 0 || v > cfg.ProbeInitial.Seconds()*1.2 {
		t.Fatalf("pause remaining %vs, want in (0, %v]", v, cfg.ProbeInitial.Seconds()*1.2)
	}
	watched.Close()
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Fatalf("after Close: %d metric families (%v), want none", len(mfs), err)
	}
}
