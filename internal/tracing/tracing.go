// Package tracing sets up OpenTelemetry tracing for patchbay's services and
// carries the W3C trace context through NATS message headers.
//
// Tracing is off unless configured, with the standard OpenTelemetry
// variables: OTEL_TRACES_EXPORTER (otlp, console or none) and the
// OTEL_EXPORTER_OTLP_* endpoint variables, which turn on the OTLP/HTTP
// exporter when set; OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER and OTEL_BSP_* as the SDK reads them. For dev mode,
// PATCHBAY_TRACE_FILE writes every span as a JSON line to a file. When off,
// Setup returns a nil Provider, and the services' code paths that trace do
// nothing (no span, no header, no allocation).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config is patchbay's own tracing setting; the exporters are configured
// by the standard OTEL_* variables.
type Config struct {
	// File, if set, receives every span as a JSON line (dev mode; Setup
	// reads PATCHBAY_TRACE_FILE when File is empty).
	File string
}

// Tracing is the tracing of one process. A nil Provider means off.
type Tracing struct {
	// Provider is the tracer provider to hand to ingest and the worker,
	// or nil when tracing is off.
	Provider trace.TracerProvider
	shutdown func(context.Context) error
}

// Shutdown flushes the spans not exported yet and stops the exporters.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Setup builds the tracing cfg and the OTEL_* variables (read with getenv,
// os.Getenv when nil) ask for; service is the default service.name
// ("patchbay-ingest"). Call Shutdown when the process stops.
func Setup(ctx context.Context, service string, cfg Config, getenv func(string) string, stderr io.Writer) (*Tracing, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	var exporters []sdktrace.SpanExporter
	var closers []io.Closer
	fail := func(err error) (*Tracing, error) {
		for _, e := range exporters {
			_ = e.Shutdown(ctx)
		}
		for _, c := range closers {
			_ = c.Close()
		}
		return nil, err
	}
	names := getenv("OTEL_TRACES_EXPORTER")
	if names == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		names = "otlp"
	}
	for _, name := range strings.Split(names, ",") {
		switch strings.TrimSpace(strings.ToLower(name)) {
		case "", "none":
		case "otlp":
			if p := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p == "" {
				p = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
				if p != "" && p != "http/protobuf" {
					return fail(fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL=%s: patchbay sends OTLP over HTTP (http/protobuf) only", p))
				}
			}
			e, err := otlptracehttp.New(ctx)
			if err != nil {
				return fail(fmt.Errorf("tracing: OTLP exporter: %w", err))
			}
			exporters = append(exporters, e)
		case "console":
			e, err := stdouttrace.New(stdouttrace.WithWriter(stderr))
			if err != nil {
				return fail(fmt.Errorf("tracing: console exporter: %w", err))
			}
			exporters = append(exporters, e)
		default:
			return fail(fmt.Errorf("tracing: OTEL_TRACES_EXPORTER=%q: patchbay knows otlp, console and none", name))
		}
	}
	if cfg.File == "" {
		cfg.File = getenv("PATCHBAY_TRACE_FILE")
	}
	if cfg.File != "" {
		f, err := os.OpenFile(cfg.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fail(fmt.Errorf("tracing: PATCHBAY_TRACE_FILE: %w", err))
		}
		closers = append(closers, f)
		e, err := stdouttrace.New(stdouttrace.WithWriter(f))
		if err != nil {
			return fail(fmt.Errorf("tracing: file exporter: %w", err))
		}
		exporters = append(exporters, e)
	}
	if len(exporters) == 0 {
		return &Tracing{}, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithHost(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return fail(fmt.Errorf("tracing: resource: %w", err))
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, e := range exporters {
		opts = append(opts, sdktrace.WithBatcher(e))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Tracing{Provider: tp, shutdown: func(ctx context.Context) error {
		err := tp.Shutdown(ctx)
		for _, c := range closers {
			err = errors.Join(err, c.Close())
		}
		return err
	}}, nil
}

// HeaderTraceparent is the W3C trace context header, as NATS messages
// (ingest's events, dead letters) carry it; NATS header names are case
// sensitive and this is the spelling W3C gives.
const HeaderTraceparent = "traceparent"

// HeaderTracestate is the W3C vendor trace state header.
const HeaderTracestate = "tracestate"

// Traceparent returns the W3C traceparent of the span in ctx, or "" when
// ctx has no valid span.
func Traceparent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	var c oneHeader
	propagation.TraceContext{}.Inject(ctx, &c)
	return c.traceparent
}

// oneHeader is a carrier keeping the traceparent only.
type oneHeader struct{ traceparent string }

func (c *oneHeader) Get(string) string { return "" }
func (c *oneHeader) Set(k, v string) {
	if k == HeaderTraceparent {
		c.traceparent = v
	}
}
func (c *oneHeader) Keys() []string { return nil }

// FromHTTP returns ctx with the remote span of an inbound request's
// traceparent and tracestate headers, if any: a span started from it
// continues the caller's trace.
func FromHTTP(ctx context.Context, h propagation.HeaderCarrier) context.Context {
	return propagation.TraceContext{}.Extract(ctx, h)
}

// RemoteSpan returns the span context that a NATS message's headers carry
// (invalid when none).
func RemoteSpan(h nats.Header) trace.SpanContext {
	if len(h[HeaderTraceparent]) == 0 {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), natsHeader(h)))
}

// natsHeader reads NATS headers by their exact names.
type natsHeader nats.Header

func (h natsHeader) Get(k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}
func (h natsHeader) Set(k, v string) { h[k] = []string{v} }
func (h natsHeader) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// TraceID returns the trace id of a traceparent value ("" if it is not
// one), for logs and the dead-letter views.
func TraceID(traceparent string) string {
	sc := RemoteSpan(nats.Header{HeaderTraceparent: {traceparent}})
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
