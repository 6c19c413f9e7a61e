package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay/patchbay/events"
	pbstream "github.com/patchbay/patchbay/stream"
)

// Publisher is what ingest needs of JetStream; jetstream.JetStream satisfies
// it. Events are stored through a stream.Publisher on its connection; the
// dead letters of sources and the readiness check use it directly.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	Conn() *nats.Conn
}

// Handler serves the ingest HTTP API.
type Handler struct {
	cfg    Config
	js     Publisher
	pub    *pbstream.Publisher
	stream string
	prefix string
	auth   *authenticator
	log    *slog.Logger
	slots  chan struct{}
	// unverified bounds the signed requests being read before their
	// signature is checked; they never hold one of slots meanwhile.
	unverified chan struct{}
	mux        *http.ServeMux
	m          *metrics
	// bodies keeps request bodies between requests: a batch's is some
	// 100 KiB, which Go zeroes whenever it allocates one anew.
	bodies bufPool
	// tracer, when not nil, traces every request (TraceWith).
	tracer trace.Tracer
}

// New returns the ingest Handler publishing to the events stream named
// stream under subject prefix prefix.
func New(cfg Config, js Publisher, stream, prefix string, log *slog.Logger, reg prometheus.Registerer) (*Handler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pub, err := pbstream.NewPublisher(js.Conn())
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	h := &Handler{
		cfg: cfg, js: js, pub: pub, stream: stream, prefix: prefix, auth: a, log: log,
		slots:      make(chan struct{}, cfg.MaxInFlight),
		unverified: make(chan struct{}, max(cfg.MaxUnverified, 1)),
		mux:        http.NewServeMux(),
		m:          newMetrics(reg),
	}
	h.mux.HandleFunc("POST /v1/events", h.postEvents)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	h.mux.HandleFunc("GET /readyz", h.ready)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/events" {
			w.Header().Set("Allow", "POST")
			writeProblem(w, Problem{Type: ProblemMethod, Title: "Method not allowed", Status: http.StatusMethodNotAllowed, Detail: "use POST"}, 0)
			return
		}
		writeProblem(w, Problem{Type: ProblemNotFound, Title: "Not found", Status: http.StatusNotFound}, 0)
	})
	return h, nil
}

// Close stops reading JetStream's answers; requests still waiting for
// theirs end at their publish timeout. Call it once the server is shut down.
func (h *Handler) Close() error {
	return h.pub.Close()
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if h.tracer != nil {
		h.serveTraced(rec, r)
	} else {
		h.mux.ServeHTTP(rec, r)
	}
	h.m.requests.WithLabelValues(statusLabel(rec.status)).Inc()
}

// Accepted is the 202 body: every event, stored.
type Accepted struct {
	Accepted int             `json:"accepted"`
	Events   []AcceptedEvent `json:"events"`
}

// AcceptedEvent reports where one event was stored. Duplicate is true when
// JetStream already held an event with this id (a retried webhook): it is
// stored once and applied once.
type AcceptedEvent struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

func (h *Handler) postEvents(w http.ResponseWriter, r *http.Request) {
	if !mediaTypeJSON(r.Header.Get("Content-Type")) {
		writeProblem(w, Problem{Type: ProblemMediaType, Title: "Unsupported media type", Status: http.StatusUnsupportedMediaType,
			Detail: "Content-Type must be application/json"}, 0)
		return
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.tooLarge(w, h.cfg.MaxBodyBytes)
		return
	}
	body, release, ok := h.admit(w, r)
	if !ok {
		return
	}
	defer release()
	// body serves another request once this one is answered: until then
	// it holds the events' patches (DecodeRequestInPlace).
	defer h.bodies.put(body)
	headerID := r.Header.Get("webhook-id")
	if headerID == "" {
		headerID = r.Header.Get("Idempotency-Key")
	}
	evs, _, err := events.DecodeRequestInPlace(body, headerID, events.Limits{MaxBatch: h.cfg.MaxBatch})
	if err != nil {
		var ve *events.ValidationError
		if errors.As(err, &ve) {
			h.m.rejected.Inc()
			writeProblem(w, Problem{Type: ProblemInvalid, Title: "Invalid event", Status: http.StatusUnprocessableEntity,
				Detail: fmt.Sprintf("%d problem(s); nothing was stored", len(ve.Errors)), Errors: ve.Errors}, 0)
			return
		}
		h.m.rejected.Inc()
		writeProblem(w, Problem{Type: ProblemMalformed, Title: "Malformed JSON", Status: http.StatusBadRequest,
			Detail: err.Error() + "; nothing was stored"}, 0)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	acc, err := h.publish(ctx, evs, APISource)
	h.m.publish.Observe(time.Since(start).Seconds())
	if err != nil {
		h.log.Warn("publish failed; answering 503", "events", len(evs), "err", err)
		writeProblem(w, Problem{Type: ProblemUnavailable, Title: "Event store unavailable", Status: http.StatusServiceUnavailable,
			Detail: "JetStream did not acknowledge every event; retry the same request (event ids make it safe)"}, 2)
		return
	}
	h.countEvents(evs)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(acc.appendJSON(make([]byte, 0, 32+len(acc.Events)*64)))
}

// countEvents adds evs to the events metric, one label lookup per target
// rather than per event.
func (h *Handler) countEvents(evs []events.Event) {
	var last events.Target
	n := 0
	for i, ev := range evs {
		if i > 0 && ev.Target != last {
			h.m.events.WithLabelValues(string(last)).Add(float64(n))
			n = 0
		}
		last = ev.Target
		n++
	}
	if n > 0 {
		h.m.events.WithLabelValues(string(last)).Add(float64(n))
	}
}

// appendJSON appends a as encoding/json's Encoder writes it (a newline
// after the object), without reflection: a batch's answer is a hundred
// of them.
func (a Accepted) appendJSON(b []byte) []byte {
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(a.Accepted), 10)
	b = append(b, `,"events":[`...)
	for i, ev := range a.Events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendJSONString(b, ev.ID)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, ev.Seq, 10)
		if ev.Duplicate {
			b = append(b, `,"duplicate":true`...)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// appendJSONString appends s as a JSON string the way encoding/json writes
// it: plain ASCII as it is, anything else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// APISource is the source (stream.SourceHeader) of the events posted to
// /v1/events; a webhook source's events carry its name.
const APISource = "api"

// publish stores evs, from source, and waits for JetStream's acknowledgement of each:
// the messages are pipelined (a batch costs one round trip, not one per
// event), then every acknowledgement is awaited. Any failure fails the
// whole request: the client retries it, and the event ids deduplicate what
// was stored.
func (h *Handler) publish(ctx context.Context, evs []events.Event, source string) (Accepted, error) {
	acc := Accepted{Accepted: len(evs), Events: make([]AcceptedEvent, len(evs))}
	// The messages of a request share one string of all the subjects
	// instead of one each; their data is encoded as each is sent, into one
	// buffer (nats.go copies what it sends), instead of a buffer of the
	// whole batch's, which Go zeroed for every request.
	subjSize := 0
	for i := range evs {
		subjSize += len(h.prefix) + len(".patch..") + len(evs[i].Target) + len(evs[i].ContactID)
	}
	subjBuf := make([]byte, 0, subjSize)
	ends := make([]int, len(evs))
	for i := range evs {
		subjBuf = evs[i].AppendSubject(subjBuf, h.prefix)
		ends[i] = len(subjBuf)
	}
	subjects := string(subjBuf)
	msgs := make([]pbstream.Message, len(evs))
	tp := h.traceparent(ctx, evs)
	for i := range evs {
		subjStart := 0
		if i > 0 {
			subjStart = ends[i-1]
		}
		msgs[i] = pbstream.Message{Subject: subjects[subjStart:ends[i]], ID: evs[i].ID, Source: source, Traceparent: tp}
		acc.Events[i].ID = evs[i].ID
	}
	// The id and expected stream headers are those jetstream.WithMsgID and
	// WithExpectStream would set. Encoding cannot fail for an event the
	// decoder accepted; if it did, the request would fail as a publish
	// does (the events before it may be stored: their ids deduplicate the
	// client's retry).
	acks, err := h.pub.PublishEncoded(ctx, h.stream, msgs, func(i int, buf []byte) ([]byte, error) {
		return evs[i].Append(buf)
	})
	if err != nil {
		return acc, err
	}
	for i, ack := range acks {
		acc.Events[i].Seq, acc.Events[i].Duplicate = ack.Sequence, ack.Duplicate
	}
	return acc, nil
}

// readAll reads r to the end like io.ReadAll, into a buffer from pool
// sized for the declared length n (< 0: unknown; at most MaxBodyBytes,
// checked before), so a 100 KiB batch is read without the doubling copies
// of io.ReadAll.
func readAll(pool *bufPool, r io.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(r)
	}
	b := pool.get(int(n) + 1) // +1: see the EOF without growing
	for {
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// maxPooled bounds the buffers kept: larger ones are left to the GC.
const maxPooled = 4 << 20

// bufPool is a sync.Pool of byte buffers.
type bufPool struct{ p sync.Pool }

// get returns an empty buffer of capacity at least n.
func (b *bufPool) get(n int) []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		if cap(*v) >= n {
			return (*v)[:0]
		}
		b.p.Put(v)
	}
	return make([]byte, 0, n)
}

// put keeps buf for a later get; nothing may use it afterwards.
func (b *bufPool) put(buf []byte) {
	if cap(buf) > 0 && cap(buf) <= maxPooled {
		b.p.Put(&buf)
	}
}

// Ready reports whether the events stream is reachable, with the reason
// when it is not. The public /readyz answers only the status; the admin
// listener serves the reason.
func (h *Handler) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := h.js.Stream(ctx, h.stream); err != nil {
		return fmt.Errorf("JetStream stream %s unavailable: %w", h.stream, err)
	}
	return nil
}

// ready is the public readiness probe: a status and nothing about why.
func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	if err := h.Ready(r.Context()); err != nil {
		h.log.Debug("not ready", "err", err)
		writeProblem(w, Problem{Type: ProblemUnavailable, Title: "Not ready", Status: http.StatusServiceUnavailable}, 1)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ready\n")
}

func (h *Handler) tooLarge(w http.ResponseWriter, limit int64) {
	h.m.rejected.Inc()
	writeProblem(w, Problem{Type: ProblemTooLarge, Title: "Body too large", Status: http.StatusRequestEntityTooLarge,
		Detail: fmt.Sprintf("request body exceeds %d bytes; split the batch", limit)}, 0)
}

func mediaTypeJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController reach the connection (per-request
// read deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func statusLabel(code int) string {
	switch code {
	case 202, 400, 401, 404, 405, 413, 415, 422, 503:
		return fmt.Sprint(code)
	}
	return fmt.Sprintf("%dxx", code/100)
}
