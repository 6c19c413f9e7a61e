// Package console is patchbay's web console for operators: the dead
// letters (a summary by reason and target, a filtered list, one letter with
// every header, replay, edit-and-replay and purge, each behind a
// confirmation) and the state and lag of each target.
//
// It is served by the worker on its admin listener, at /console/ (and by
// 'patchbay dev' on the dev admin listener). The worker is where the
// target states live (its rate budgets follow the shared pause records)
// and it already holds the NATS connection the dead-letter stream and the
// consumers' lag are read through; the admin listener is already the
// operators' port, private by configuration (loopback unless
// PATCHBAY_ADMIN_TOKEN is set), so the console adds no port, no process
// and no new exposure. Every replica serves the same view: all it shows
// is read from NATS.
//
// Pages are html/template with inline CSS: no script, no front-end build
// and nothing fetched from elsewhere.
//
// Authentication follows the admin listener's rule. With an admin token,
// a browser signs in once with the token on /console/login and receives a
// signed session cookie (HttpOnly, SameSite=Strict); scripts may send the
// token as a bearer token instead. Without a token the listener is
// loopback-only, the console issues a session on the first visit, and it
// refuses requests whose Host is not a loopback name (DNS rebinding).
// Every mutating form carries a CSRF token bound to the session (an HMAC of
// the session id), and net/http's CrossOriginProtection refuses
// cross-origin POSTs before they reach a handler.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/dlq"
)

//go:embed templates/*.html
var templateFS embed.FS

// Config configures a Console.
type Config struct {
	// Token is the admin token (PATCHBAY_ADMIN_TOKEN); empty when none is
	// configured, and then the listener must be loopback-only.
	Token string
	// Path is where the console is mounted, ending in "/" (default
	// "/console/").
	Path string
	// Letters is the dead-letter stream.
	Letters Letters
	// Targets reports the targets' states (nil: the section is left out).
	Targets Targets
	// Contacts reads a contact's fields and history for the contact page
	// (nil: the page says it is not available).
	Contacts Contacts
	// SessionTTL is how long a sign-in lasts (default 12h).
	SessionTTL time.Duration
	// PageSize is the number of letters per page (default 50).
	PageSize int
	// ReplayRate caps a bulk replay, in letters per second (default 100),
	// so that replaying many letters does not exceed a provider's limit.
	ReplayRate float64
	Log        *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Console serves the console's pages; it is an http.Handler.
type Console struct {
	cfg      Config
	sessions *sessions
	pages    map[string]*template.Template
	handler  http.Handler
}

// New returns a Console. It fails when Letters is missing or the path does
// not end in "/".
func New(cfg Config) (*Console, error) {
	if cfg.Path == "" {
		cfg.Path = "/console/"
	}
	if !strings.HasPrefix(cfg.Path, "/") || !strings.HasSuffix(cfg.Path, "/") {
		return nil, fmt.Errorf("console: path %q must start and end with /", cfg.Path)
	}
	if cfg.Letters == nil {
		return nil, errors.New("console: Letters is required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = dlq.DefaultLimit
	}
	if cfg.ReplayRate <= 0 {
		cfg.ReplayRate = 100
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s, err := newSessions(cfg.Token, cfg.SessionTTL, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &Console{cfg: cfg, sessions: s}
	if c.pages, err = parsePages(cfg.Path); err != nil {
		return nil, err
	}
	c.handler = c.routes()
	return c, nil
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.handler.ServeHTTP(w, r)
}

// routes returns the console's handler: routing inside authentication and
// CSRF checks inside cross-origin protection.
func (c *Console) routes() http.Handler {
	p := c.cfg.Path
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+p+"{$}", c.overview)
	mux.HandleFunc("GET "+p+"letters", c.list)
	mux.HandleFunc("GET "+p+"letters/{seq}", c.show)
	mux.HandleFunc("GET "+p+"contacts", c.contact)
	mux.HandleFunc("GET "+p+"letters/{seq}/{action}", c.confirm)
	mux.HandleFunc("POST "+p+"letters/{seq}/{action}", c.act)
	mux.HandleFunc("GET "+p+"bulk/{action}", c.bulkConfirm)
	mux.HandleFunc("POST "+p+"bulk/{action}", c.bulkAct)

	authed := c.authenticate(mux)
	top := http.NewServeMux()
	top.HandleFunc("GET "+p+"login", c.loginForm)
	top.HandleFunc("POST "+p+"login", c.login)
	top.HandleFunc("POST "+p+"logout", c.logout)
	top.Handle(p, authed)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusForbidden, "cross-origin request refused")
	}))
	return c.guardHost(cop.Handler(top))
}

// guardHost refuses, without a token, requests not addressed to loopback.
func (c *Console) guardHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.sessions.token == nil && !loopbackHost(r.Host) {
			http.Error(w, errHost.Error(), http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// sessionKey carries the session id in a request's context.
type sessionKey struct{}

// authenticate lets a request through with a valid session or the bearer
// token, and checks the CSRF token of every POST made with a session.
// Without an admin token it opens a session on the first visit.
func (c *Console) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := c.sessions.session(r)
		switch {
		case id != nil:
		case c.sessions.bearer(r):
			next.ServeHTTP(w, r)
			return
		case c.sessions.token == nil && r.Method == http.MethodGet:
			id = c.sessions.issue(w, r, c.cfg.Path)
		case r.Method == http.MethodGet:
			http.Redirect(w, r, c.cfg.Path+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		default:
			c.fail(w, r, http.StatusUnauthorized, "sign in first: the session is missing or has expired")
			return
		}
		if r.Method == http.MethodPost && !c.sessions.checkCSRF(r, id) {
			c.cfg.Log.Warn("console: form without a valid CSRF token refused", "path", r.URL.Path)
			c.fail(w, r, http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page and try again")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, id)))
	})
}

// csrfOf returns the CSRF token for r's session ("" for bearer requests).
func (c *Console) csrfOf(r *http.Request) string {
	id, _ := r.Context().Value(sessionKey{}).([]byte)
	if id == nil {
		return ""
	}
	return c.sessions.csrf(id)
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	if c.sessions.token == nil {
		http.Redirect(w, r, c.cfg.Path, http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", map[string]any{"Next": safeNext(c.cfg.Path, r.FormValue("next"))})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(c.cfg.Path, r.PostFormValue("next"))
	if c.sessions.token == nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if !c.sessions.tokenOK(r.PostFormValue("token")) {
		c.cfg.Log.Warn("console: sign-in with a wrong token", "remote", r.RemoteAddr)
		c.render(w, r, http.StatusUnauthorized, "login", map[string]any{"Next": next, "Error": "That is not the admin token."})
		return
	}
	c.sessions.issue(w, r, c.cfg.Path)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if id := c.sessions.session(r); id == nil || !c.sessions.checkCSRF(r, id) {
		c.fail(w, r, http.StatusForbidden, "the form's CSRF token is missing or wrong")
		return
	}
	c.sessions.clear(w, c.cfg.Path)
	http.Redirect(w, r, c.cfg.Path+"login", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect inside the console.
func safeNext(base, next string) string {
	if strings.HasPrefix(next, base) && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return base
}

// overview shows the targets and the summary of every letter.
func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sum, err := c.cfg.Letters.Summary(ctx, dlq.Filter{})
	if err != nil {
		c.fail(w, r, http.StatusBadGateway, "reading the dead letters: "+err.Error())
		return
	}
	data := map[string]any{"Summary": sum}
	if c.cfg.Targets != nil {
		ts, err := c.cfg.Targets.TargetStates(ctx)
		if err != nil {
			data["TargetsErr"] = err.Error()
		}
		data["Targets"] = ts
	}
	c.render(w, r, http.StatusOK, "overview", data)
}

// list shows one page of the letters the filter selects.
func (c *Console) list(w http.ResponseWriter, r *http.Request) {
	f, problems := parseFilter(r.URL.Query())
	data := map[string]any{"Filter": f, "Problems": problems, "Done": doneMessage(r.URL.Query())}
	if len(problems) == 0 {
		ctx := r.Context()
		page, err := c.cfg.Letters.List(ctx, f.dlqFilter(), dlq.Page{Before: f.Before, Limit: c.cfg.PageSize})
		if err != nil {
			c.fail(w, r, http.StatusBadGateway, "reading the dead letters: "+err.Error())
			return
		}
		sum, err := c.cfg.Letters.Summary(ctx, f.dlqFilter())
		if err != nil {
			c.fail(w, r, http.StatusBadGateway, "reading the dead letters: "+err.Error())
			return
		}
		data["Page"], data["Summary"] = page, sum
		if page.Next != 0 {
			data["NextURL"] = f.url(c.cfg.Path+"letters", page.Next)
		}
		if f.Before != 0 {
			data["FirstURL"] = f.url(c.cfg.Path+"letters", 0)
		}
	}
	c.render(w, r, http.StatusOK, "list", data)
}

// show shows one letter with every header.
func (c *Console) show(w http.ResponseWriter, r *http.Request) {
	l, ok := c.letter(w, r)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, "show", map[string]any{"L": view(c.cfg.Path, l)})
}

// letter reads the letter the path names, answering 404 or 502 itself.
func (c *Console) letter(w http.ResponseWriter, r *http.Request) (dlq.Letter, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		c.fail(w, r, http.StatusNotFound, "no such dead letter")
		return dlq.Letter{}, false
	}
	l, err := c.cfg.Letters.Show(r.Context(), seq)
	if errors.Is(err, dlq.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, fmt.Sprintf("dead letter %d is not in the stream (replayed or purged already?)", seq))
		return dlq.Letter{}, false
	}
	if err != nil {
		c.fail(w, r, http.StatusBadGateway, "reading the dead letter: "+err.Error())
		return dlq.Letter{}, false
	}
	return l, true
}

// confirm shows the confirmation step of replay (with a dry run that names
// the fields already superseded) or purge, or the edit form.
func (c *Console) confirm(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != "replay" && action != "purge" && action != "edit" {
		c.fail(w, r, http.StatusNotFound, "no such action")
		return
	}
	l, ok := c.letter(w, r)
	if !ok {
		return
	}
	if action == "edit" {
		c.render(w, r, http.StatusOK, "edit", map[string]any{"L": view(c.cfg.Path, l), "Form": newEditForm(l)})
		return
	}
	data := map[string]any{"L": view(c.cfg.Path, l), "Action": action}
	if action == "replay" {
		rep, err := c.cfg.Letters.Replay(r.Context(), dlq.Selection{Seqs: []uint64{l.DLQSeq}}, dlq.ReplayOptions{DryRun: true})
		if err == nil && len(rep.Results) == 1 {
			data["DryRun"] = rep.Results[0]
		}
	}
	c.render(w, r, http.StatusOK, "confirm", data)
}

// act replays, purges or edits and replays one letter.
func (c *Console) act(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != "replay" && action != "purge" && action != "edit" {
		c.fail(w, r, http.StatusNotFound, "no such action")
		return
	}
	_ = r.ParseForm() // parsed already unless the request came with the bearer token
	l, ok := c.letter(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	one := dlq.Selection{Seqs: []uint64{l.DLQSeq}}
	switch action {
	case "purge":
		if _, err := c.cfg.Letters.Purge(ctx, one, dlq.PurgeOptions{}); err != nil {
			c.fail(w, r, http.StatusBadGateway, fmt.Sprintf("purge of dead letter %d failed: %v", l.DLQSeq, err))
			return
		}
	case "replay", "edit":
		var opts dlq.ReplayOptions
		if action == "edit" {
			form := editFormFrom(l, r.PostForm)
			data, ok := form.build()
			if ok {
				opts.Edit = data
				_, err := c.cfg.Letters.Replay(ctx, one, opts)
				if errors.Is(err, dlq.ErrInvalidEdit) || errors.Is(err, dlq.ErrBadRequest) {
					form.place(err)
					ok = false
				} else if err != nil {
					c.fail(w, r, http.StatusBadGateway, fmt.Sprintf("replay of dead letter %d failed: %v", l.DLQSeq, err))
					return
				}
			}
			if !ok {
				c.render(w, r, http.StatusUnprocessableEntity, "edit", map[string]any{"L": view(c.cfg.Path, l), "Form": form})
				return
			}
			action = "replay"
			break
		}
		rep, err := c.cfg.Letters.Replay(ctx, one, opts)
		if err == nil && rep.Failed > 0 {
			err = errors.New(rep.Results[0].Error)
		}
		if err != nil {
			c.fail(w, r, http.StatusBadGateway, fmt.Sprintf("replay of dead letter %d failed: %v", l.DLQSeq, err))
			return
		}
	}
	c.cfg.Log.Info("console: dead letter "+action+"ed", "dlq_seq", l.DLQSeq, "event_id", l.EventID, "target", l.Target)
	http.Redirect(w, r, c.cfg.Path+"letters?done="+action+"&n=1", http.StatusSeeOther)
}

// selection is what a bulk action acts on: the filter's letters, or every
// letter when the filter is empty (the confirmation page says so).
func selection(f filter) dlq.Selection {
	df := f.dlqFilter()
	return dlq.Selection{Filter: df, All: df.IsZero()}
}

// bulkConfirm shows how many letters the filter selects before a bulk
// replay or purge.
func (c *Console) bulkConfirm(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != "replay" && action != "purge" {
		c.fail(w, r, http.StatusNotFound, "no such action")
		return
	}
	f, problems := parseFilter(r.URL.Query())
	if len(problems) > 0 {
		c.fail(w, r, http.StatusBadRequest, "the filter is not valid: fix it on the list first")
		return
	}
	f.Before = 0
	sum, err := c.cfg.Letters.Summary(r.Context(), f.dlqFilter())
	if err != nil {
		c.fail(w, r, http.StatusBadGateway, "reading the dead letters: "+err.Error())
		return
	}
	c.render(w, r, http.StatusOK, "bulk", map[string]any{"Action": action, "Filter": f, "Summary": sum, "Rate": c.cfg.ReplayRate})
}

// bulkAct replays or purges every letter the posted filter selects. What
// was done before an error or an interruption stays done, nothing is
// enqueued twice, and a re-run picks up the rest.
func (c *Console) bulkAct(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != "replay" && action != "purge" {
		c.fail(w, r, http.StatusNotFound, "no such action")
		return
	}
	_ = r.ParseForm()
	f, problems := parseFilter(r.PostForm)
	if len(problems) > 0 {
		c.fail(w, r, http.StatusBadRequest, "the filter is not valid")
		return
	}
	ctx := r.Context()
	var n, failed int
	var err error
	if action == "replay" {
		var rep dlq.ReplayReport
		rep, err = c.cfg.Letters.Replay(ctx, selection(f), dlq.ReplayOptions{RateCap: c.cfg.ReplayRate})
		n, failed = rep.Replayed, rep.Failed
	} else {
		var rep dlq.PurgeReport
		rep, err = c.cfg.Letters.Purge(ctx, selection(f), dlq.PurgeOptions{})
		n = rep.Purged
	}
	if err != nil {
		c.fail(w, r, http.StatusBadGateway, fmt.Sprintf("%s stopped after %d letters: %v", action, n, err))
		return
	}
	c.cfg.Log.Info("console: bulk "+action, "letters", n, "failed", failed)
	http.Redirect(w, r, fmt.Sprintf("%sletters?done=%s&n=%d&failed=%d", c.cfg.Path, action, n, failed), http.StatusSeeOther)
}

// doneMessage reads the outcome a redirect after an action carries.
func doneMessage(v url.Values) string {
	n, err := strconv.Atoi(v.Get("n"))
	if err != nil || n < 0 {
		return ""
	}
	switch v.Get("done") {
	case "replay":
		msg := fmt.Sprintf("Replayed %d dead letter(s).", n)
		if f, _ := strconv.Atoi(v.Get("failed")); f > 0 {
			msg += fmt.Sprintf(" %d could not be replayed and stay: open them for the reason.", f)
		}
		return msg
	case "purge":
		return fmt.Sprintf("Purged %d dead letter(s).", n)
	}
	return ""
}

// fail renders an error page with status.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", map[string]any{"Status": status, "StatusText": http.StatusText(status), "Message": msg})
}
