package app

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor/revyops"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/redact"
)

// TestEnabledTargets: a target is enabled by its API key; the other
// provider's settings are then not demanded.
func TestEnabledTargets(t *testing.T) {
	rv := revyops.Config{BaseURL: "https://api.revyops.example", APIKey: "revyops-key-1", AuthHeader: "X-API-Key", AuthFormat: "%s", Timeout: time.Second}
	sk := skipcall.Config{BaseURL: "https://api-public.skipcall.app", APIKey: "sk_live_key1", Timeout: time.Second}
	noKey := func(c skipcall.Config) skipcall.Config { c.APIKey = ""; return c }
	cases := []struct {
		name    string
		rv      revyops.Config
		sk      skipcall.Config
		want    []events.Target
		wantErr []string
	}{
		{"both", rv, sk, []events.Target{events.TargetRevyOps, events.TargetSkipcall}, nil},
		{"Skipcall only (the Skipcall base URL keeps its default)", revyops.Config{}, sk, []events.Target{events.TargetSkipcall}, nil},
		{"RevyOps only", rv, noKey(sk), []events.Target{events.TargetRevyOps}, nil},
		{"none", revyops.Config{}, noKey(sk), nil, []string{"no target enabled", "PATCHBAY_SKIPCALL_API_KEY", "PATCHBAY_REVYOPS_API_KEY"}},
		{"RevyOps URL without its key", revyops.Config{BaseURL: rv.BaseURL}, sk, nil, []string{"PATCHBAY_REVYOPS_BASE_URL is set but PATCHBAY_REVYOPS_API_KEY is not"}},
		{"an enabled target is validated", revyops.Config{APIKey: "revyops-key-1"}, sk, nil, []string{"revyops: base URL"}},
		{"a malformed Skipcall key", revyops.Config{}, skipcall.Config{BaseURL: sk.BaseURL, APIKey: "pk_1", Timeout: time.Second}, nil, []string{"sk_live_"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := WorkerConfig{RevyOps: tc.rv, Skipcall: tc.sk}.EnabledTargets()
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, targets %v", got)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			if err := validateProviders(WorkerConfig{RevyOps: tc.rv, Skipcall: tc.sk}); err != nil {
				t.Fatalf("validateProviders: %v", err)
			}
		})
	}
}

// TestDisabledTargetEventsStayQueued: a worker configured for Skipcall only
// delivers Skipcall events and leaves RevyOps events in the stream (no
// consumer, no dead letter), says so in its log and its metrics; a worker
// with the RevyOps key then delivers them.
func TestDisabledTargetEventsStayQueued(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := WorkerConfig{
		Stream: s.Stream, Worker: pbtest.WorkerConfig(),
		Skipcall: skipcall.Config{BaseURL: s.SkipURL, APIKey: redact.Secret(pbtest.SkipcallKey), Timeout: 2 * time.Second},
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	w, closeBudgets, err := NewWorker(ctx, log, cfg, s.JS, s.NC, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeBudgets()
	done := make(chan error, 1)
	wctx, stop := context.WithCancel(ctx)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	}()

	const uuid = "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c"
	s.RevyOps.PutContact(42, map[string]any{"first_name": "Old"})
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "Old"})
	s.PostEvent(map[string]any{"id": "r-1", "target": "revyops", "contact_id": 42, "occurred_at": "2026-11-25T10:00:00Z", "patch": map[string]any{"first_name": "Grace"}, "structure": "FLAT"})
	s.PostEvent(map[string]any{"id": "s-1", "target": "skipcall", "contact_id": uuid, "occurred_at": "2026-11-25T10:00:00Z", "patch": map[string]any{"firstName": "Ada"}})
	pbtest.Eventually(t, 15*time.Second, "the Skipcall event applied and acknowledged", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["firstName"] == "Ada" && s.StreamMsgs(s.Stream.EventsStream) == 1
	})
	// The RevyOps event, published before the Skipcall one, is still there:
	// no consumer was made for it, nothing was sent, nothing dead-lettered.
	if _, err := s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.TargetConsumer("revyops")); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("consumer of the disabled target: %v, want none", err)
	}
	if c, _ := s.RevyOps.Contact(42); c["first_name"] != "Old" || s.RevyOps.PatchCount(42) != 0 {
		t.Errorf("the disabled target was sent something: %v", c)
	}
	if letters, err := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix).ListSubject(ctx, "", 10); err != nil || len(letters) != 0 {
		t.Errorf("dead letters %v (%v), want none", letters, err)
	}
	for target, want := range map[string]float64{"revyops": 0, "skipcall": 1} {
		if got, ok := gaugeValue(t, reg, "patchbay_worker_target_enabled", target); !ok || got != want {
			t.Errorf("patchbay_worker_target_enabled{target=%q} = %v (present %v), want %v", target, got, ok, want)
		}
	}
	if l := logs.String(); !strings.Contains(l, "target disabled") || !strings.Contains(l, "PATCHBAY_REVYOPS_API_KEY") || !strings.Contains(l, "stay queued") {
		t.Errorf("no start line about the disabled target:\n%s", l)
	}
	var disabled bool
	for _, st := range w.States() {
		if st.Target == "revyops" {
			disabled = st.Disabled
		}
	}
	if !disabled {
		t.Errorf("States does not show RevyOps disabled: %+v", w.States())
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A worker with the RevyOps key delivers what waited.
	cfg.RevyOps = revyops.Config{BaseURL: s.RevyURL, APIKey: redact.Secret(pbtest.RevyOpsKey), AuthHeader: "X-API-Key", AuthFormat: "%s", Timeout: 2 * time.Second}
	w2, close2, err := NewWorker(ctx, pbtest.Logger(t), cfg, s.JS, s.NC, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer close2()
	go func() { done <- w2.Run(ctx) }()
	pbtest.Eventually(t, 15*time.Second, "the queued RevyOps event applied", func() bool {
		c, _ := s.RevyOps.Contact(42)
		return c["first_name"] == "Grace" && s.StreamMsgs(s.Stream.EventsStream) == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// gaugeValue returns the value of gauge name for target in reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, target string) (float64, bool) {
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
			if labelIs(m, "target", target) {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelIs(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}
