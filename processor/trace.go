package processor

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/tracing"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// tracedProvider is a Provider that records a span per delivery attempt,
// a child of the trace the delivered events were ingested in (traced):
// the provider's HTTP status and the attempt's outcome are its attributes.
type tracedProvider struct {
	next   Provider
	tracer trace.Tracer
	target string
}

// Patch implements Provider.
func (p tracedProvider) Patch(ctx context.Context, ev *events.Event) (Result, error) {
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("patchbay.target", p.target), attribute.String("patchbay.event_id", ev.ID),
			attribute.Int("patchbay.patch_bytes", len(ev.Patch))),
	}
	if d, ok := ctx.Value(traceKey{}).(*tracedDelivery); ok {
		opts = append(opts, trace.WithLinks(d.links...), trace.WithAttributes(attribute.Int("patchbay.coalesced", d.n)))
	}
	ctx, span := p.tracer.Start(ctx, "PATCH "+p.target, opts...)
	defer span.End()
	res, err := p.next.Patch(ctx, ev)
	status, outcome := res.Status, "applied"
	if err != nil {
		var pe *Error
		var we *ratelimit.WaitError
		switch {
		case errors.As(err, &we):
			outcome = "paused" // nothing was sent
		case errors.As(err, &pe):
			status, outcome = pe.Status, pe.Class.String()
		case ctx.Err() != nil:
			outcome = "interrupted"
		default:
			outcome = ClassOf(err).String()
		}
		span.SetStatus(codes.Error, err.Error())
	}
	if status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	span.SetAttributes(attribute.String("patchbay.outcome", outcome))
	return res, err
}

type traceKey struct{}

// tracedDelivery is what traced hands the span of a delivery: links to
// the traces of the events merged into it besides its parent's, and how
// many events it carries.
type tracedDelivery struct {
	links []trace.Link
	n     int
}

// traced returns ctx carrying, for the provider's span, the trace the
// delivery's events were ingested in: the last event's (the one the merged
// PATCH is named after) as the parent, the others' as links. With tracing
// off it returns ctx as it is, at no cost.
func (l *lane) traced(ctx context.Context, msgs []pending) context.Context {
	if l.w.tracer == nil || len(msgs) == 0 {
		return ctx
	}
	parent := tracing.RemoteSpan(msgs[len(msgs)-1].msg.Headers())
	d := &tracedDelivery{n: len(msgs)}
	for _, p := range msgs[:len(msgs)-1] {
		if sc := tracing.RemoteSpan(p.msg.Headers()); sc.IsValid() && !sc.Equal(parent) {
			d.links = append(d.links, trace.Link{SpanContext: sc})
		}
	}
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	return context.WithValue(ctx, traceKey{}, d)
}
