package app

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
)

// AdminAPISpec is the OpenAPI 3 description of the dead-letter admin API,
// served at /admin/v1/openapi.yaml and checked against the handlers by a
// test.
//
//go:embed adminapi.yaml
var AdminAPISpec []byte

// DefaultReplayRate is the replay rate cap (letters a second) when a
// request does not give one.
const DefaultReplayRate = 10

// maxReplayBody bounds a replay request's body (an edited event is small).
const maxReplayBody = 1 << 20

// DeadLetterAPI serves /admin/v1/dead-letters over a dlq.Store: JSON,
// paginated by DLQ sequence, errors as RFC 9457 problem+json. It does no
// authentication: Admin.Handler puts it behind the admin token.
type DeadLetterAPI struct {
	Store *dlq.Store
	Log   *slog.Logger
}

// Register adds the API's routes to mux.
func (a DeadLetterAPI) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(AdminAPISpec)
	})
	mux.HandleFunc("GET /admin/v1/dead-letters", a.list)
	mux.HandleFunc("GET /admin/v1/dead-letters/summary", a.summary)
	mux.HandleFunc("GET /admin/v1/dead-letters/{seq}", a.show)
	mux.HandleFunc("POST /admin/v1/dead-letters/replay", a.replay)
	mux.HandleFunc("DELETE /admin/v1/dead-letters/{seq}", a.deleteOne)
	mux.HandleFunc("DELETE /admin/v1/dead-letters", a.purge)
}

// filterFromQuery reads a dlq.Filter from query parameters.
func filterFromQuery(q url.Values, now time.Time) (dlq.Filter, error) {
	f := dlq.Filter{Target: q.Get("target"), ContactID: q.Get("contact_id"), Reason: dlq.Reason(q.Get("reason")), ErrorCode: q.Get("error_code")}
	var err error
	if s := q.Get("status"); s != "" {
		if f.Status, err = strconv.Atoi(s); err != nil {
			return f, fmt.Errorf("%w: status %q is not a number", dlq.ErrBadRequest, s)
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := q.Get(p.name); s != "" {
			if *p.dst, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return f, fmt.Errorf("%w: %s %q is not an RFC 3339 time", dlq.ErrBadRequest, p.name, s)
			}
		}
	}
	if s := q.Get("older_than"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return f, fmt.Errorf("%w: older_than %q is not a positive duration", dlq.ErrBadRequest, s)
		}
		f.Until = now.Add(-d)
	}
	return f, f.Validate()
}

func (a DeadLetterAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := filterFromQuery(q, time.Now())
	if err != nil {
		a.problem(w, r, err)
		return
	}
	var page dlq.Page
	if s := q.Get("before"); s != "" {
		if page.Before, err = strconv.ParseUint(s, 10, 64); err != nil {
			a.problem(w, r, fmt.Errorf("%w: before %q is not a sequence", dlq.ErrBadRequest, s))
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if page.Limit, err = strconv.Atoi(s); err != nil || page.Limit < 1 || page.Limit > dlq.MaxLimit {
			a.problem(w, r, fmt.Errorf("%w: limit %q is not between 1 and %d", dlq.ErrBadRequest, s, dlq.MaxLimit))
			return
		}
	}
	res, err := a.Store.List(r.Context(), f, page)
	if err != nil {
		a.problem(w, r, err)
		return
	}
	writeJSONStatus(w, http.StatusOK, res)
}

func (a DeadLetterAPI) summary(w http.ResponseWriter, r *http.Request) {
	f, err := filterFromQuery(r.URL.Query(), time.Now())
	if err != nil {
		a.problem(w, r, err)
		return
	}
	sum, err := a.Store.Summary(r.Context(), f)
	if err != nil {
		a.problem(w, r, err)
		return
	}
	writeJSONStatus(w, http.StatusOK, sum)
}

// pathSeq reads the {seq} path value.
func pathSeq(r *http.Request) (uint64, error) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%w: %q is not a sequence number", dlq.ErrBadRequest, r.PathValue("seq"))
	}
	return seq, nil
}

func (a DeadLetterAPI) show(w http.ResponseWriter, r *http.Request) {
	seq, err := pathSeq(r)
	if err != nil {
		a.problem(w, r, err)
		return
	}
	l, err := a.Store.Show(r.Context(), seq)
	if err != nil {
		a.problem(w, r, err)
		return
	}
	writeJSONStatus(w, http.StatusOK, l)
}

// replayRequest is the body of POST /admin/v1/dead-letters/replay.
type replayRequest struct {
	Seqs    []uint64        `json:"seqs"`
	Filter  dlq.Filter      `json:"filter"`
	All     bool            `json:"all"`
	RateCap *float64        `json:"rate_cap"`
	DryRun  bool            `json:"dry_run"`
	Edit    json.RawMessage `json:"edit"`
}

func (a DeadLetterAPI) replay(w http.ResponseWriter, r *http.Request) {
	var req replayRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxReplayBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.problem(w, r, fmt.Errorf("%w: body: %v", dlq.ErrBadRequest, err))
		return
	}
	if err := req.Filter.Validate(); err != nil {
		a.problem(w, r, err)
		return
	}
	opts := dlq.ReplayOptions{RateCap: DefaultReplayRate, DryRun: req.DryRun}
	if req.RateCap != nil {
		opts.RateCap = *req.RateCap
	}
	if len(req.Edit) > 0 && string(req.Edit) != "null" {
		opts.Edit = req.Edit
	}
	rep, err := a.Store.Replay(r.Context(), dlq.Selection{Seqs: req.Seqs, Filter: req.Filter, All: req.All}, opts)
	if err != nil {
		a.problem(w, r, err)
		return
	}
	writeJSONStatus(w, http.StatusOK, rep)
}

func (a DeadLetterAPI) deleteOne(w http.ResponseWriter, r *http.Request) {
	seq, err := pathSeq(r)
	if err != nil {
		a.problem(w, r, err)
		return
	}
	rep, err := a.Store.Purge(r.Context(), dlq.Selection{Seqs: []uint64{seq}}, dlq.PurgeOptions{})
	if err != nil {
		a.problem(w, r, err)
		return
	}
	if rep.Purged == 0 {
		a.problem(w, r, fmt.Errorf("%w: sequence %d", dlq.ErrNotFound, seq))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a DeadLetterAPI) purge(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := filterFromQuery(q, time.Now())
	if err != nil {
		a.problem(w, r, err)
		return
	}
	all, dryRun := q.Get("all") == "true", q.Get("dry_run") == "true"
	rep, err := a.Store.Purge(r.Context(), dlq.Selection{Filter: f, All: all}, dlq.PurgeOptions{DryRun: dryRun})
	if err != nil {
		a.problem(w, r, err)
		return
	}
	writeJSONStatus(w, http.StatusOK, rep)
}

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Errors names each invalid field of an edited event (422).
	Errors []events.FieldError `json:"errors,omitempty"`
}

// problem answers err as problem+json with the status its class calls for.
func (a DeadLetterAPI) problem(w http.ResponseWriter, r *http.Request, err error) {
	p := Problem{Type: "about:blank", Status: http.StatusInternalServerError, Detail: err.Error(), Instance: r.URL.Path}
	var verr *events.ValidationError
	switch {
	case errors.As(err, &verr):
		p.Status, p.Errors = http.StatusUnprocessableEntity, verr.Errors
	case errors.Is(err, dlq.ErrInvalidEdit):
		p.Status = http.StatusUnprocessableEntity
	case errors.Is(err, dlq.ErrNotFound):
		p.Status = http.StatusNotFound
	case errors.Is(err, dlq.ErrBadRequest), errors.Is(err, dlq.ErrEmptySelection):
		p.Status = http.StatusBadRequest
	default:
		if a.Log != nil {
			a.Log.Error("admin API", "path", r.URL.Path, "err", err)
		}
		p.Detail = "the dead-letter stream could not be read or written; see the worker's log"
	}
	p.Title = http.StatusText(p.Status)
	writeProblem(w, p)
}

func writeProblem(w http.ResponseWriter, p Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
