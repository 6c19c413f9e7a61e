package ingest

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/patchbay/patchbay/events"
)

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type   string              `json:"type"`
	Title  string              `json:"title"`
	Status int                 `json:"status"`
	Detail string              `json:"detail,omitempty"`
	Errors []events.FieldError `json:"errors,omitempty"`
}

// Problem types, documented in the README.
const (
	ProblemMalformed   = "urn:patchbay:problem:malformed-json"
	ProblemInvalid     = "urn:patchbay:problem:invalid-event"
	ProblemTooLarge    = "urn:patchbay:problem:body-too-large"
	ProblemMediaType   = "urn:patchbay:problem:unsupported-media-type"
	ProblemAuth        = "urn:patchbay:problem:unauthorized"
	ProblemUnavailable = "urn:patchbay:problem:unavailable"
	ProblemMethod      = "urn:patchbay:problem:method-not-allowed"
	ProblemNotFound    = "urn:patchbay:problem:not-found"
)

func writeProblem(w http.ResponseWriter, p Problem, retryAfter int) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if p.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="patchbay"`)
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
