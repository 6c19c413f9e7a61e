package processor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/internal/tracing"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/sandbox"
)

// exportedSpan is the part of a span, as the file exporter writes it
// (one JSON object per span), that the test reads.
type exportedSpan struct {
	Name        string
	SpanKind    int
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
	Status struct{ Code string }
}

func (s exportedSpan) attr(key string) any {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value.Value
		}
	}
	return nil
}

// TestTraceFollowsAnEventFromWebhookToPatch: with tracing on (the file
// exporter dev mode uses), a webhook that carries a traceparent is served
// in a span of the caller's trace; the event is stored with that trace's
// context, and the worker's delivery attempt is a span of the same trace,
// a child of the ingest span, with the provider's status and the outcome.
// An event the provider rejects is dead-lettered with its trace's
// traceparent, and its delivery span says why.
func TestTraceFollowsAnEventFromWebhookToPatch(t *testing.T) {
	file := filepath.Join(t.TempDir(), "spans.jsonl")
	tr, err := tracing.Setup(context.Background(), "patchbay-test", tracing.Config{File: file}, func(string) string { return "" }, nil)
	if err != nil || tr.Provider == nil {
		t.Fatalf("Setup = %+v, %v; want tracing on", tr, err)
	}
	s := pbtest.Start(t, pbtest.Options{SkipcallRate: 1000, Tracer: tr.Provider})
	cfg := pbtest.WorkerConfig()
	w, err := processor.New(cfg, processor.Deps{JS: s.JS, Conn: s.NC, Stream: s.Stream, Targets: s.Targets(cfg, 2*time.Second),
		Logger: s.Log, Registerer: prometheus.NewRegistry(), TracerProvider: tr.Provider})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	const contact, rejected = "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c", "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
	s.Skipcall.PutContact(contact, map[string]any{"firstName": "Old"})
	s.Skipcall.PutContact(rejected, map[string]any{"firstName": "Old"})
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	body, _ := json.Marshal(skipEvent("evt-traced", contact, map[string]any{"firstName": "Ada"}))
	if code, b := s.Post(body, map[string]string{"traceparent": "00-" + callerTrace + "-00f067aa0ba902b7-01"}); code != http.StatusAccepted {
		t.Fatalf("POST: %d %s", code, b)
	}
	pbtest.Eventually(t, 15*time.Second, "the event applied", func() bool {
		c, _ := s.Skipcall.Contact(contact)
		return c["firstName"] == "Ada"
	})
	// Then one the provider rejects, without a caller's trace: ingest
	// starts one.
	s.Skipcall.SetFaults(sandbox.Faults{ErrorRate: 1, ErrorStatus: http.StatusBadRequest})
	s.PostEvent(skipEvent("evt-rejected", rejected, map[string]any{"firstName": "Bob"}))
	pbtest.Eventually(t, 15*time.Second, "the rejected event dead-lettered", func() bool { return s.StreamMsgs(s.Stream.DLQStream) == 1 })
	letters, err := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix).ListSubject(context.Background(), "", 10)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters %+v, %v", letters, err)
	}

	cancel()
	<-done
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := tr.Shutdown(sctx); err != nil { // exports what is left
		t.Fatal(err)
	}
	spans := readSpans(t, file)

	find := func(kind int, prefix, eventID string) exportedSpan {
		t.Helper()
		for _, sp := range spans {
			if sp.SpanKind == kind && strings.HasPrefix(sp.Name, prefix) && sp.attr("patchbay.event_id") == eventID {
				return sp
			}
		}
		t.Fatalf("no %q span of %s among the %d exported", prefix, eventID, len(spans))
		return exportedSpan{}
	}
	const server, client = 2, 3 // trace.SpanKindServer, SpanKindClient
	in, out := find(server, "POST /v1/events", "evt-traced"), find(client, "PATCH skipcall", "evt-traced")
	if in.SpanContext.TraceID != callerTrace || out.SpanContext.TraceID != callerTrace {
		t.Fatalf("trace ids: ingest %s, delivery %s; want both the caller's %s", in.SpanContext.TraceID, out.SpanContext.TraceID, callerTrace)
	}
	if in.Parent.SpanID != "00f067aa0ba902b7" || out.Parent.SpanID != in.SpanContext.SpanID {
		t.Fatalf("parents: ingest's %s (want the caller's), delivery's %s (want the ingest span %s)", in.Parent.SpanID, out.Parent.SpanID, in.SpanContext.SpanID)
	}
	if out.attr("http.response.status_code") != float64(200) || out.attr("patchbay.outcome") != "applied" || in.attr("http.response.status_code") != float64(202) {
		t.Fatalf("attributes: ingest %+v, delivery %+v", in.Attributes, out.Attributes)
	}
	rin, rout := find(server, "POST /v1/events", "evt-rejected"), find(client, "PATCH skipcall", "evt-rejected")
	if rin.SpanContext.TraceID == callerTrace || rout.SpanContext.TraceID != rin.SpanContext.TraceID || rout.Parent.SpanID != rin.SpanContext.SpanID {
		t.Fatalf("rejected event: ingest span %+v, delivery span %+v", rin.SpanContext, rout)
	}
	if rout.attr("patchbay.outcome") != "permanent" || rout.attr("http.response.status_code") != float64(400) || rout.Status.Code != "Error" {
		t.Fatalf("rejected delivery span: %+v", rout)
	}
	if got := tracing.TraceID(letters[0].Traceparent); got != rin.SpanContext.TraceID {
		t.Fatalf("dead letter's traceparent %q: trace %q, want %s", letters[0].Traceparent, got, rin.SpanContext.TraceID)
	}
	raw, _ := os.ReadFile(file)
	t.Logf("exported trace of evt-traced (ingest span, then delivery span):\n%s", traceOf(t, raw, callerTrace))
}

// readSpans reads the spans the file exporter wrote.
func readSpans(t *testing.T, file string) []exportedSpan {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []exportedSpan
	dec := json.NewDecoder(bufio.NewReader(f))
	for dec.More() {
		var sp exportedSpan
		if err := dec.Decode(&sp); err != nil {
			t.Fatal(err)
		}
		out = append(out, sp)
	}
	return out
}

// traceOf returns the exported spans of trace id, indented.
func traceOf(t *testing.T, raw []byte, id string) string {
	t.Helper()
	var b strings.Builder
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	for dec.More() {
		var m json.RawMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m), `"TraceID":"`+id+`"`) {
			ind, _ := json.MarshalIndent(m, "", "  ")
			b.Write(ind)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
