package ingest

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/tracing"
)

// TraceWith makes h start a span for every request it serves, continuing
// the caller's trace when the request has a traceparent header, and store
// each event with the span's traceparent in its NATS headers, for the
// worker's delivery span to continue. A nil tp (tracing off) is a no-op.
// Call it before serving.
func (h *Handler) TraceWith(tp trace.TracerProvider) {
	if tp == nil {
		return
	}
	h.tracer = tp.Tracer("github.com/patchbay/patchbay/ingest")
}

// serveTraced serves r under a server span of its own.
func (h *Handler) serveTraced(rec *statusRecorder, r *http.Request) {
	ctx := tracing.FromHTTP(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := h.tracer.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	defer span.End()
	r = r.WithContext(ctx)
	h.mux.ServeHTTP(rec, r)
	if r.Pattern != "" {
		span.SetName(r.Pattern) // the route, not the path: a source's name is in it, never a contact
	}
	span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
	if rec.status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(rec.status))
	}
}

// traceparent is the traceparent a request's events are stored with (its
// span's), or "" when tracing is off; it notes the events on the span.
func (h *Handler) traceparent(ctx context.Context, evs []events.Event) string {
	if h.tracer == nil {
		return ""
	}
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.Int("patchbay.events", len(evs)))
	if len(evs) == 1 {
		span.SetAttributes(attribute.String("patchbay.event_id", evs[0].ID), attribute.String("patchbay.target", string(evs[0].Target)))
	}
	return tracing.Traceparent(ctx)
}
