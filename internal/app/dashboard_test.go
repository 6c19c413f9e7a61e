package app

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/sandbox"
)

// dashboardExprs returns every PromQL expression of the Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/grafana/dashboards/patchbay.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	if len(out) < 10 {
		t.Fatalf("the dashboard has %d queries; did its format change?", len(out))
	}
	return out
}

// TestDashboardQueriesExistInAScrape runs the pipeline in-process (NATS,
// both sandboxes, ingest and a worker on one registry, as dev mode and a
// deployed replica have), drives it through an applied event, a rejected
// one (dead letter) and a 429 (a pause), scrapes its /metrics as
// Prometheus would, and checks that every metric the Grafana dashboard
// queries is in the scrape, with every label its queries select or group
// by.
func TestDashboardQueriesExistInAScrape(t *testing.T) {
	reg := NewRegistry()
	s := pbtest.Start(t, pbtest.Options{SkipcallRate: 1000, Registerer: reg})
	cfg := pbtest.WorkerConfig()
	w, err := processor.New(cfg, processor.Deps{JS: s.JS, Conn: s.NC, Stream: s.Stream, Targets: s.Targets(cfg, 2*time.Second), Logger: s.Log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	event := func(id, contact string) map[string]any {
		return map[string]any{"id": id, "target": "skipcall", "contact_id": contact, "occurred_at": "2026-11-25T10:00:00Z", "patch": map[string]any{"firstName": "Ada"}}
	}
	const c1, c2, c3 = "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b01", "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b02", "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b03"
	for _, c := range []string{c1, c2, c3} {
		s.Skipcall.PutContact(c, map[string]any{"firstName": "Old"})
	}
	s.PostEvent(event("e1", c1))
	pbtest.Eventually(t, 15*time.Second, "applied", func() bool { c, _ := s.Skipcall.Contact(c1); return c["firstName"] == "Ada" })
	s.Skipcall.SetFaults(sandbox.Faults{ErrorRate: 1, ErrorStatus: http.StatusBadRequest})
	s.PostEvent(event("e2", c2))
	pbtest.Eventually(t, 15*time.Second, "dead-lettered", func() bool { return s.StreamMsgs(s.Stream.DLQStream) == 1 })
	s.Skipcall.SetFaults(sandbox.Faults{ErrorRate: 1, ErrorStatus: http.StatusTooManyRequests})
	s.PostEvent(event("e3", c3))
	pbtest.Eventually(t, 15*time.Second, "paused by a 429", func() bool { return w.States()[1].Paused || w.States()[0].Paused })
	if code, _ := s.Post([]byte(`{"id":`), nil); code != http.StatusBadRequest {
		t.Fatalf("a malformed request: %d", code)
	}

	srv := httptest.NewServer(Admin{Registry: reg}.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// The series a query can name: a histogram's _bucket, _sum and _count.
	labels := map[string][]string{}
	for name, f := range families {
		var ls []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(ls, l.GetName()) {
					ls = append(ls, l.GetName())
				}
			}
		}
		labels[name] = ls
		if f.GetType() == dto.MetricType_HISTOGRAM {
			labels[name+"_bucket"] = append(slices.Clone(ls), "le")
			labels[name+"_sum"], labels[name+"_count"] = ls, ls
		}
	}
	metricRe := regexp.MustCompile(`\b(patchbay_[a-z_]+)(\{([^}]*)\})?`)
	matcherRe := regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)`)
	byRe := regexp.MustCompile(`\bby \(([^)]*)\)`)
	for _, expr := range dashboardExprs(t) {
		ms := metricRe.FindAllStringSubmatch(expr, -1)
		if len(ms) == 0 {
			t.Errorf("query %q names no patchbay metric", expr)
		}
		var all []string
		for _, m := range ms {
			ls, ok := labels[m[1]]
			if !ok {
				t.Errorf("query %q: %s is not in the scrape", expr, m[1])
				continue
			}
			all = append(all, ls...)
			for _, mm := range matcherRe.FindAllStringSubmatch(m[3], -1) {
				if !slices.Contains(ls, mm[1]) {
					t.Errorf("query %q: %s has no label %s (it has %v)", expr, m[1], mm[1], ls)
				}
			}
		}
		for _, by := range byRe.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(by[1], ",") {
				if l = strings.TrimSpace(l); !slices.Contains(all, l) {
					t.Errorf("query %q groups by %s, which its metrics do not have", expr, l)
				}
			}
		}
	}
}
