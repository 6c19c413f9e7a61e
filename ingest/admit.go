package ingest

import (
	"errors"
	"net/http"
	"time"
)

// admit authenticates r and reads its body within the bounds its
// credentials allow. It returns the body and a release func for the
// in-flight slot the request then holds; when it returns false it has
// answered the request.
//
// A bearer token is checked before anything is read: an authenticated
// request takes an in-flight slot and may send MaxBodyBytes within the
// server's ReadTimeout. A Standard Webhooks signature covers the body, so
// such a request is first checked for what can be checked without it (the
// headers are present, the timestamp is within tolerance, the signature is
// well formed), then read under its own bounds (MaxUnverified at once,
// SignedMaxBodyBytes, SignedReadTimeout), and takes an in-flight slot only
// once the signature verifies. Unauthenticated senders therefore cannot
// hold the slots that authenticated clients need.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) ([]byte, func(), bool) {
	if h.auth.insecure || h.auth.bearer(r) {
		if !h.take(w, h.slots) {
			return nil, nil, false
		}
		release := func() { <-h.slots }
		body, ok := h.readBody(w, r, h.cfg.MaxBodyBytes)
		if !ok {
			release()
			return nil, nil, false
		}
		return body, release, true
	}
	// From here the sender is not authenticated yet: every answer closes
	// the connection, so that net/http does not wait for the rest of an
	// unread body before answering (it would, for bodies under 256 KiB).
	w.Header().Set("Connection", "close")
	if !h.auth.mightBeSigned(r.Header, time.Now()) {
		h.unauthorized(w)
		return nil, nil, false
	}
	if r.ContentLength > h.cfg.SignedMaxBodyBytes {
		h.tooLarge(w, h.cfg.SignedMaxBodyBytes)
		return nil, nil, false
	}
	if !h.take(w, h.unverified) {
		return nil, nil, false
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.SignedReadTimeout))
	body, ok := h.readBody(w, r, h.cfg.SignedMaxBodyBytes)
	<-h.unverified
	if !ok {
		return nil, nil, false
	}
	if !h.auth.signed(r.Header, body) {
		h.unauthorized(w)
		return nil, nil, false
	}
	w.Header().Del("Connection")
	if !h.take(w, h.slots) {
		return nil, nil, false
	}
	return body, func() { <-h.slots }, true
}

// take acquires a slot of pool or, when all are taken, answers 503 at once
// (load shedding: a full house answers before reading the body).
func (h *Handler) take(w http.ResponseWriter, pool chan struct{}) bool {
	select {
	case pool <- struct{}{}:
		return true
	default:
		h.m.shed.Inc()
		writeProblem(w, Problem{Type: ProblemUnavailable, Title: "Overloaded", Status: http.StatusServiceUnavailable,
			Detail: "too many requests in flight; retry"}, 1)
		return false
	}
}

// readBody reads at most limit bytes of r's body; over the limit it answers
// 413, on a read error or timeout 400.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := readAll(&h.bodies, http.MaxBytesReader(w, r.Body, limit), min(r.ContentLength, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.tooLarge(w, limit)
			return nil, false
		}
		writeProblem(w, Problem{Type: ProblemMalformed, Title: "Unreadable body", Status: http.StatusBadRequest, Detail: err.Error()}, 0)
		return nil, false
	}
	return body, true
}

func (h *Handler) unauthorized(w http.ResponseWriter) {
	writeProblem(w, Problem{Type: ProblemAuth, Title: "Unauthorized", Status: http.StatusUnauthorized, Detail: errUnauthenticated.Error()}, 0)
}
