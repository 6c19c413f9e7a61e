package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/stream"
)

// OperatorRoutes returns the admin API's status and target routes, for
// Admin.Routes:
//
//	GET  /admin/v1/status                    the StatusReport ('patchbay status -json')
//	POST /admin/v1/targets/{target}/pause    body {"by": "...", "reason": "..."} (both optional)
//	POST /admin/v1/targets/{target}/resume
//
// A pause or resume answers the target's TargetStatus. Errors are
// application/problem+json. The POSTs take JSON only (or no body), so a
// cross-site form cannot send one.
func OperatorRoutes(js jetstream.JetStream, scfg stream.Config, log *slog.Logger) func(*http.ServeMux) {
	api := &operatorAPI{js: js, scfg: scfg, log: log}
	return func(mux *http.ServeMux) {
		mux.HandleFunc("GET /admin/v1/status", api.status)
		mux.HandleFunc("POST /admin/v1/targets/{target}/pause", api.pause)
		mux.HandleFunc("POST /admin/v1/targets/{target}/resume", api.resume)
	}
}

type operatorAPI struct {
	js   jetstream.JetStream
	scfg stream.Config
	log  *slog.Logger
}

// apiProblem writes an RFC 9457 problem, as the dead-letter API does.
func apiProblem(w http.ResponseWriter, status int, title, detail string) {
	writeProblem(w, Problem{Type: "about:blank", Title: title, Status: status, Detail: detail})
}

func (a *operatorAPI) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	rep, err := Status(ctx, a.js, a.scfg)
	if err != nil {
		apiProblem(w, http.StatusServiceUnavailable, "NATS unavailable", err.Error())
		return
	}
	writeJSONStatus(w, http.StatusOK, rep)
}

// pauseRequest is the body of a pause.
type pauseRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

func (a *operatorAPI) pause(w http.ResponseWriter, r *http.Request) {
	var req pauseRequest
	if !readJSONBody(w, r, &req) {
		return
	}
	if req.By == "" {
		req.By = "admin-api@" + r.RemoteAddr
	}
	a.change(w, r, func(ctx context.Context, op *ratelimit.Operator, target string) error {
		_, err := op.Pause(ctx, target, req.By, req.Reason)
		if err == nil {
			a.log.Info("target paused by hand through the admin API", "target", target, "by", req.By, "reason", req.Reason)
		}
		return err
	})
}

func (a *operatorAPI) resume(w http.ResponseWriter, r *http.Request) {
	if !readJSONBody(w, r, &struct{}{}) {
		return
	}
	a.change(w, r, func(ctx context.Context, op *ratelimit.Operator, target string) error {
		_, err := op.Resume(ctx, target)
		if err == nil {
			a.log.Info("target resumed through the admin API", "target", target)
		}
		return err
	})
}

// change applies f to the request's target and answers its status.
func (a *operatorAPI) change(w http.ResponseWriter, r *http.Request, f func(context.Context, *ratelimit.Operator, string) error) {
	target := r.PathValue("target")
	if !slices.Contains(events.Targets(), events.Target(target)) {
		apiProblem(w, http.StatusNotFound, "Unknown target", "patchbay delivers to: revyops, skipcall")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	op, err := ratelimit.NewOperator(ctx, a.js, a.scfg.KVBucket("RATE"))
	if err == nil {
		err = f(ctx, op, target)
	}
	switch {
	case errors.Is(err, ratelimit.ErrUnknownTarget):
		apiProblem(w, http.StatusConflict, "No worker has run with this target", err.Error())
		return
	case err != nil:
		apiProblem(w, http.StatusServiceUnavailable, "NATS unavailable", err.Error())
		return
	}
	rep, err := Status(ctx, a.js, a.scfg)
	if err != nil {
		apiProblem(w, http.StatusServiceUnavailable, "NATS unavailable", err.Error())
		return
	}
	for _, t := range rep.Targets {
		if t.Target == target {
			writeJSONStatus(w, http.StatusOK, t)
			return
		}
	}
	writeJSONStatus(w, http.StatusOK, rep)
}

// readJSONBody decodes an optional JSON body into v; it answers 415 for a
// body that is not JSON and 400 for JSON that does not decode.
func readJSONBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		apiProblem(w, http.StatusBadRequest, "Unreadable body", err.Error())
		return false
	}
	if len(body) == 0 && r.Header.Get("Content-Type") == "" {
		return true
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		apiProblem(w, http.StatusUnsupportedMediaType, "JSON only", "send Content-Type: application/json")
		return false
	}
	if len(body) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		apiProblem(w, http.StatusBadRequest, "Malformed JSON", err.Error())
		return false
	}
	return true
}
