package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/sources"
)

// ContactLookup finds a provider contact id for a source's contact id;
// *sources.ContactMap satisfies it. It returns an error wrapping
// sources.ErrUnmapped when there is no mapping.
type ContactLookup interface {
	Get(ctx context.Context, source string, target events.Target, sourceID string) (string, error)
}

// SourcesAccepted is the 202 body of POST /v1/sources/{name}: the events
// stored, and those dead-lettered as unmapped (stored too, durably, for
// replay once their contact is mapped).
type SourcesAccepted struct {
	Accepted
	Unmapped []UnmappedEvent `json:"unmapped,omitempty"`
}

// UnmappedEvent names an event whose source contact id had no mapping.
type UnmappedEvent struct {
	ID              string `json:"id"`
	SourceContactID string `json:"source_contact_id"`
}

type sourceHandler struct {
	h        *Handler
	set      *sources.Set
	contacts ContactLookup
	letters  *dlq.Publisher
	authFail *prometheus.CounterVec
	unmapped *prometheus.CounterVec
	now      func() time.Time
}

// MountSources serves the sources of set at POST /v1/sources/{name}, with
// the CloudEvents webhook validation handshake on OPTIONS. contacts may be
// nil when no source looks contact ids up. Metrics are registered on reg
// (may be nil).
func (h *Handler) MountSources(set *sources.Set, contacts ContactLookup, reg prometheus.Registerer) error {
	if set.LookupContacts() && contacts == nil {
		return errors.New("ingest: a source looks contact ids up but no contact map is configured")
	}
	s := &sourceHandler{
		h: h, set: set, contacts: contacts, letters: dlq.NewPublisher(h.js, h.prefix), now: time.Now,
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_ingest_source_auth_failures_total", Help: "Source requests refused with 401, by source.",
		}, []string{"source"}),
		unmapped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_ingest_source_unmapped_total", Help: "Source events dead-lettered because their contact id had no mapping, by source.",
		}, []string{"source"}),
	}
	for _, n := range set.Names() {
		s.authFail.WithLabelValues(n)
		s.unmapped.WithLabelValues(n)
	}
	if reg != nil {
		if err := reg.Register(s.authFail); err != nil {
			return err
		}
		if err := reg.Register(s.unmapped); err != nil {
			return err
		}
	}
	h.mux.HandleFunc("POST /v1/sources/{name}", s.post)
	h.mux.HandleFunc("OPTIONS /v1/sources/{name}", s.options)
	h.mux.HandleFunc("/v1/sources/{name}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeProblem(w, Problem{Type: ProblemMethod, Title: "Method not allowed", Status: http.StatusMethodNotAllowed, Detail: "use POST"}, 0)
	})
	return nil
}

// options answers the CloudEvents webhook validation handshake
// (WebHook-Request-Origin -> WebHook-Allowed-Origin, Allow: POST).
func (s *sourceHandler) options(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.set.Get(r.PathValue("name")); !ok {
		s.notFound(w)
		return
	}
	w.Header().Set("Allow", "POST")
	if origin := r.Header.Get("WebHook-Request-Origin"); origin != "" {
		w.Header().Set("WebHook-Allowed-Origin", origin)
		if rate := r.Header.Get("WebHook-Request-Rate"); rate != "" {
			w.Header().Set("WebHook-Allowed-Rate", "*")
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (s *sourceHandler) notFound(w http.ResponseWriter) {
	writeProblem(w, Problem{Type: ProblemNotFound, Title: "Not found", Status: http.StatusNotFound, Detail: "no such source"}, 0)
}

func (s *sourceHandler) unauthorized(w http.ResponseWriter, src string) {
	s.authFail.WithLabelValues(src).Inc()
	writeProblem(w, Problem{Type: ProblemAuth, Title: "Unauthorized", Status: http.StatusUnauthorized, Detail: "missing or invalid credentials"}, 0)
}

func (s *sourceHandler) post(w http.ResponseWriter, r *http.Request) {
	h := s.h
	src, ok := s.set.Get(r.PathValue("name"))
	if !ok {
		s.notFound(w)
		return
	}
	// A source's credentials cover the body, so the body is read before
	// they can be checked: like a signed request on /v1/events it is read
	// under the unverified bounds (MaxUnverified at once,
	// SignedMaxBodyBytes, SignedReadTimeout), with the connection closed
	// after a refusal, and takes an in-flight slot only once authenticated.
	w.Header().Set("Connection", "close")
	if r.ContentLength > h.cfg.SignedMaxBodyBytes {
		h.tooLarge(w, h.cfg.SignedMaxBodyBytes)
		return
	}
	if !h.take(w, h.unverified) {
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.SignedReadTimeout))
	body, ok := h.readBody(w, r, h.cfg.SignedMaxBodyBytes)
	<-h.unverified
	if !ok {
		return
	}
	req := &sources.Request{Method: r.Method, URI: r.URL.RequestURI(), Header: r.Header, Body: body, Now: s.now()}
	if !src.Authenticate(req) {
		s.unauthorized(w, src.Name)
		return
	}
	w.Header().Del("Connection")
	if !h.take(w, h.slots) {
		return
	}
	defer func() { <-h.slots }()
	lim := events.Limits{MaxBatch: h.cfg.MaxBatch}
	ms, err := src.Map(req, lim)
	if err != nil {
		s.badRequest(w, src.Name, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.PublishTimeout)
	defer cancel()
	if src.LookupContacts() {
		if err := s.lookup(ctx, src.Name, ms); err != nil {
			h.log.Warn("contact map lookup failed; answering 503", "source", src.Name, "err", err)
			writeProblem(w, Problem{Type: ProblemUnavailable, Title: "Contact map unavailable", Status: http.StatusServiceUnavailable,
				Detail: "the contact map did not answer; retry the same request"}, 2)
			return
		}
	}
	if err := src.Validate(ms, lim); err != nil {
		s.badRequest(w, src.Name, err)
		return
	}
	start := time.Now()
	acc, err := s.store(ctx, src.Name, ms)
	h.m.publish.Observe(time.Since(start).Seconds())
	if err != nil {
		h.log.Warn("publish failed; answering 503", "source", src.Name, "events", len(ms), "err", err)
		writeProblem(w, Problem{Type: ProblemUnavailable, Title: "Event store unavailable", Status: http.StatusServiceUnavailable,
			Detail: "JetStream did not acknowledge every event; retry the same request (delivery ids make it safe)"}, 2)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(acc)
}

// badRequest answers a mapping or validation failure: 415, 400 or 422
// naming the source field.
func (s *sourceHandler) badRequest(w http.ResponseWriter, src string, err error) {
	s.h.m.rejected.Inc()
	var ve *events.ValidationError
	switch {
	case errors.As(err, &ve):
		writeProblem(w, Problem{Type: ProblemInvalid, Title: "Invalid event", Status: http.StatusUnprocessableEntity,
			Detail: fmt.Sprintf("source %s: %d problem(s); nothing was stored", src, len(ve.Errors)), Errors: ve.Errors}, 0)
	case errors.Is(err, sources.ErrUnsupportedMedia):
		writeProblem(w, Problem{Type: ProblemMediaType, Title: "Unsupported media type", Status: http.StatusUnsupportedMediaType, Detail: err.Error()}, 0)
	default:
		writeProblem(w, Problem{Type: ProblemMalformed, Title: "Malformed JSON", Status: http.StatusBadRequest, Detail: err.Error() + "; nothing was stored"}, 0)
	}
}

// lookup replaces each source contact id by the provider's, or marks the
// event unmapped. Any error other than a missing mapping fails the request.
func (s *sourceHandler) lookup(ctx context.Context, src string, ms []sources.Mapped) error {
	for i := range ms {
		pid, err := s.contacts.Get(ctx, src, ms[i].Target(), ms[i].SourceContactID)
		switch {
		case errors.Is(err, sources.ErrUnmapped):
			ms[i].Unmapped = true
		case err != nil:
			return err
		default:
			ms[i].SetContactID(pid)
		}
	}
	return nil
}

// store publishes the mapped events (all acknowledged, or an error) and
// dead-letters the unmapped ones with reason unmapped; their message id is
// derived from the event id, so a retried request stores one letter.
func (s *sourceHandler) store(ctx context.Context, src string, ms []sources.Mapped) (SourcesAccepted, error) {
	var evs []events.Event
	var out SourcesAccepted
	for i := range ms {
		if !ms[i].Unmapped {
			evs = append(evs, ms[i].Event)
		}
	}
	if len(evs) > 0 {
		acc, err := s.h.publish(ctx, evs, src)
		if err != nil {
			return out, err
		}
		out.Accepted = acc
		for _, ev := range evs {
			s.h.m.events.WithLabelValues(string(ev.Target)).Inc()
		}
	}
	if out.Events == nil {
		out.Events = []AcceptedEvent{}
	}
	for i := range ms {
		if !ms[i].Unmapped {
			continue
		}
		m := &ms[i]
		data, err := m.LetterData()
		if err != nil {
			return out, err
		}
		err = s.letters.Publish(ctx, dlq.Letter{
			Reason: dlq.ReasonUnmapped, Detail: "no provider contact id for source contact id; map it, then replay",
			Subject: s.h.prefix + ".patch." + string(m.Event.Target) + ".unmapped", EventID: m.Event.ID, Target: string(m.Event.Target),
			Data: data, Source: src, SourceContactID: m.SourceContactID, MsgID: "unmapped:" + m.Event.ID,
		})
		if err != nil {
			return out, err
		}
		s.unmapped.WithLabelValues(src).Inc()
		out.Unmapped = append(out.Unmapped, UnmappedEvent{ID: m.Event.ID, SourceContactID: m.SourceContactID})
	}
	return out, nil
}
