package console

import (
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/patchbay/patchbay/dlq"
)

// letterView is a letter as the pages show it.
type letterView struct {
	dlq.Letter
	Contact string
	// ContactURL is the contact page of the letter's contact at its
	// target ("" for an unmapped letter: no provider contact).
	ContactURL string
	Payload    string
	Headers    []header
}

type header struct{ Name, Value string }

// view prepares l for a page: the payload indented, and every header the
// letter carries, in the order the dlq package writes them.
func view(base string, l dlq.Letter) letterView {
	v := letterView{Letter: l, Contact: contactOf(l), Payload: pretty(l.Data)}
	if id := l.ContactID(); id != "" && l.Target != "" {
		v.ContactURL = contactURL(base, l.Target, id)
	}
	tm := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	num := func(n uint64) string {
		if n == 0 {
			return ""
		}
		return strconv.FormatUint(n, 10)
	}
	for _, h := range []header{
		{dlq.HeaderReason, string(l.Reason)},
		{dlq.HeaderDetail, l.Detail},
		{dlq.HeaderStatus, num(uint64(l.Status))},
		{dlq.HeaderErrorCode, l.ErrorCode},
		{dlq.HeaderErrorMessage, l.ErrorMessage},
		{dlq.HeaderExcerpt, l.Excerpt},
		{dlq.HeaderAttempts, strconv.Itoa(l.Attempts)},
		{dlq.HeaderFirstAttempt, tm(l.FirstAttempt)},
		{dlq.HeaderLastAttempt, tm(l.LastAttempt)},
		{dlq.HeaderStream, l.Stream},
		{dlq.HeaderStreamSeq, num(l.StreamSeq)},
		{dlq.HeaderSubject, l.Subject},
		{dlq.HeaderEventID, l.EventID},
		{dlq.HeaderTarget, l.Target},
		{dlq.HeaderSource, l.Source},
		{dlq.HeaderSourceContactID, l.SourceContactID},
		{dlq.HeaderDeadAt, tm(l.DeadAt)},
	} {
		if h.Value != "" {
			v.Headers = append(v.Headers, h)
		}
	}
	return v
}

// contactOf is the letter's contact: at the target, or at the source for
// an unmapped letter.
func contactOf(l dlq.Letter) string {
	if c := l.ContactID(); c != "" {
		return c
	}
	return l.SourceContactID
}

// parsePages parses every page with the layout; base is the console's path.
func parsePages(base string) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"base":    func() string { return base },
		"contact": contactOf,
		"reasons": func() []dlq.Reason {
			return []dlq.Reason{dlq.ReasonRejected, dlq.ReasonExhausted, dlq.ReasonInvalid, dlq.ReasonMaxDeliveries, dlq.ReasonUnmapped}
		},
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"until": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			d := time.Until(t).Round(time.Second)
			if d <= 0 {
				return "due now"
			}
			return "in " + d.String()
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		name := n[len("templates/") : len(n)-len(".html")]
		pages[name] = t
	}
	return pages, nil
}

// render writes page with data (plus the session's CSRF token and the
// console's path) and status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, data map[string]any) {
	d := maps.Clone(data)
	if d == nil {
		d = map[string]any{}
	}
	d["CSRF"], d["Base"], d["Signed"] = c.csrfOf(r), c.cfg.Path, c.sessions.token != nil && c.csrfOf(r) != ""
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if err := c.pages[page].ExecuteTemplate(w, "layout.html", d); err != nil {
		c.cfg.Log.Error("console: render", "page", page, "err", err)
	}
}
