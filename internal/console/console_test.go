package console_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/app"
	"github.com/patchbay/patchbay/internal/console"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/stream"
)

const token = "9f2c4e1a7b3d5f60819a2b3c4d5e6f70"

// env is a dead-letter stream with letters in it and a console over it.
type env struct {
	js      jetstream.JetStream
	scfg    stream.Config
	letters *dlq.Store
	srv     *httptest.Server
}

func contactID(i int) string { return fmt.Sprintf("0b7e4c6a-1f2d-4e3a-9b8c-%012d", i) }

// newEnv starts NATS with patchbay's streams and a console with cfg's
// token and page size.
func newEnv(t *testing.T, cfg console.Config) *env {
	t.Helper()
	emb := natstest.Server(t)
	js := natstest.Connect(t, emb, t.Name())
	scfg := pbtest.StreamConfig(emb.ClientURL())
	if err := stream.Ensure(natstest.Context(t), js, scfg); err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, scfg: scfg}
	e.letters = dlq.NewStore(js, scfg.DLQStream, scfg.SubjectPrefix)
	cfg.Letters = e.letters
	c, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(c)
	t.Cleanup(e.srv.Close)
	return e
}

// letter stores a dead letter for contact i with the reason, target and
// status given, and returns its DLQ sequence.
func (e *env) letter(t *testing.T, i int, target string, reason dlq.Reason, status int, code string) uint64 {
	t.Helper()
	ctx := natstest.Context(t)
	contact := contactID(i)
	if target == "revyops" {
		contact = fmt.Sprint(1000 + i)
	}
	data := fmt.Sprintf(`{"id":"ev-%d","target":%q,"contact_id":%q,"occurred_at":"2026-11-25T10:00:00Z","patch":{"city":"Atlantis","firstName":"Ada"}}`, i, target, contact)
	if target == "revyops" {
		data = fmt.Sprintf(`{"id":"ev-%d","target":"revyops","contact_id":%q,"occurred_at":"2026-11-25T10:00:00Z","patch":{"first_name":"Ada"},"structure":"FLAT"}`, i, contact)
	}
	err := dlq.NewPublisher(e.js, e.scfg.SubjectPrefix).Publish(ctx, dlq.Letter{
		Reason: reason, Status: status, ErrorCode: code, ErrorMessage: "city: value not accepted", Attempts: 1,
		Stream: e.scfg.EventsStream, StreamSeq: uint64(i), Subject: e.scfg.SubjectPrefix + ".patch." + target + "." + contact,
		EventID: fmt.Sprintf("ev-%d", i), Target: target, Data: []byte(data),
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := e.letters.List(ctx, dlq.Filter{}, dlq.Page{Limit: 1})
	if err != nil || len(ls.Letters) != 1 {
		t.Fatalf("newest letter: %v %v", ls, err)
	}
	return ls.Letters[0].DLQSeq
}

// msgs returns how many messages the stream holds.
func (e *env) msgs(t *testing.T, name string) uint64 {
	t.Helper()
	ctx := natstest.Context(t)
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// client is a browser-like client: a cookie jar, no redirects followed.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(natstest.Context(t), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs c in with the admin token.
func signIn(t *testing.T, c *http.Client, base string) {
	t.Helper()
	code, _, h := do(t, c, "POST", base+"/console/login", url.Values{"token": {token}, "next": {"/console/"}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/console/" {
		t.Fatalf("sign-in: %d %v", code, h)
	}
}

// csrfFrom reads the CSRF token from a page's forms.
func csrfFrom(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// TestFormPostWithoutCSRFChangesNothing: a signed-in browser's form post
// without the session's CSRF token, with another session's, or from
// another origin is refused and changes nothing; the same post with the
// token does what it says.
func TestFormPostWithoutCSRFChangesNothing(t *testing.T) {
	e := newEnv(t, console.Config{Token: token})
	seq := e.letter(t, 1, "skipcall", dlq.ReasonRejected, 400, "BAD_REQUEST")
	base := e.srv.URL
	c := client(t)
	signIn(t, c, base)
	code, page, _ := do(t, c, "GET", fmt.Sprintf("%s/console/letters/%d/purge", base, seq), nil, nil)
	if code != http.StatusOK {
		t.Fatalf("confirm page: %d", code)
	}
	good := csrfFrom(t, page)

	other := client(t)
	signIn(t, other, base)
	_, otherPage, _ := do(t, other, "GET", base+"/console/letters", nil, nil)
	foreign := csrfFrom(t, otherPage)
	if foreign == good {
		t.Fatal("two sessions share a CSRF token")
	}

	fixed := url.Values{"occurred_at": {"2026-11-25T10:00:00Z"}, "f.city": {"Paris"}, "f.firstName": {"Ada"}}
	for _, tc := range []struct {
		name, action string
		form         url.Values
		hdr          map[string]string
		want         int
	}{
		{"purge without a token", "purge", url.Values{}, nil, http.StatusForbidden},
		{"purge with an empty token", "purge", url.Values{"csrf": {""}}, nil, http.StatusForbidden},
		{"purge with another session's token", "purge", url.Values{"csrf": {foreign}}, nil, http.StatusForbidden},
		{"replay without a token", "replay", url.Values{}, nil, http.StatusForbidden},
		{"edit without a token", "edit", fixed, nil, http.StatusForbidden},
		{"purge from another site", "purge", url.Values{"csrf": {good}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"purge from another origin", "purge", url.Values{"csrf": {good}}, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := do(t, c, "POST", fmt.Sprintf("%s/console/letters/%d/%s", base, seq, tc.action), tc.form, tc.hdr)
			if code != tc.want {
				t.Fatalf("%d, want %d: %s", code, tc.want, body)
			}
			if n := e.msgs(t, e.scfg.DLQStream); n != 1 {
				t.Fatalf("the dead-letter stream holds %d letters after a refused post, want 1", n)
			}
			if n := e.msgs(t, e.scfg.EventsStream); n != 0 {
				t.Fatalf("a refused post put %d events on the events stream", n)
			}
		})
	}
	// Bulk purge without a token: refused too.
	if code, _, _ := do(t, c, "POST", base+"/console/bulk/purge", url.Values{}, nil); code != http.StatusForbidden {
		t.Fatalf("bulk purge without a token: %d", code)
	}
	if code, _, _ := do(t, c, "POST", base+"/console/logout", url.Values{}, nil); code != http.StatusForbidden {
		t.Fatalf("logout without a token: %d", code)
	}
	if n := e.msgs(t, e.scfg.DLQStream); n != 1 {
		t.Fatalf("DLQ holds %d, want 1", n)
	}

	// The same post with the session's token purges it.
	code, _, h := do(t, c, "POST", fmt.Sprintf("%s/console/letters/%d/purge", base, seq), url.Values{"csrf": {good}}, nil)
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "done=purge") {
		t.Fatalf("purge with the token: %d %v", code, h)
	}
	if n := e.msgs(t, e.scfg.DLQStream); n != 0 {
		t.Fatalf("DLQ holds %d after the purge, want 0", n)
	}
}

// TestConsoleSignIn: with an admin token, nothing is shown before
// sign-in, a wrong token is refused, a bearer token works for scripts, and
// on the admin listener the rest stays behind the bearer token.
func TestConsoleSignIn(t *testing.T) {
	e := newEnv(t, console.Config{Token: token})
	e.letter(t, 1, "skipcall", dlq.ReasonRejected, 400, "BAD_REQUEST")
	base := e.srv.URL
	c := client(t)
	for _, p := range []string{"/console/", "/console/letters", "/console/letters/1"} {
		code, body, h := do(t, c, "GET", base+p, nil, nil)
		if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/console/login") || strings.Contains(body, "ev-1") {
			t.Fatalf("GET %s before sign-in: %d %v", p, code, h)
		}
	}
	if code, _, _ := do(t, c, "POST", base+"/console/letters/1/purge", url.Values{}, nil); code != http.StatusUnauthorized {
		t.Fatalf("POST before sign-in: %d", code)
	}
	if code, _, _ := do(t, c, "POST", base+"/console/login", url.Values{"token": {"wrong-" + token}}, nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code, body, _ := do(t, c, "GET", base+"/console/letters", nil, map[string]string{"Authorization": "Bearer " + token}); code != http.StatusOK || !strings.Contains(body, "ev-1") {
		t.Fatalf("bearer: %d", code)
	}
	// A redirect after sign-in stays inside the console.
	code, _, h := do(t, c, "POST", base+"/console/login", url.Values{"token": {token}, "next": {"//evil.example/"}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/console/" {
		t.Fatalf("sign-in with an outside next: %d %v", code, h)
	}
	if code, body, _ := do(t, c, "GET", base+"/console/letters", nil, nil); code != http.StatusOK || !strings.Contains(body, "ev-1") {
		t.Fatalf("after sign-in: %d", code)
	}

	// Mounted on the admin listener: the console signs in by itself, the
	// rest still needs the bearer token.
	con, err := console.New(console.Config{Token: token, Letters: e.letters})
	if err != nil {
		t.Fatal(err)
	}
	adm := httptest.NewServer(app.Admin{Config: app.AdminConfig{Token: token}, Registry: app.NewRegistry(), Console: con}.Handler())
	t.Cleanup(adm.Close)
	if code, _, _ := do(t, client(t), "GET", adm.URL+"/console/login", nil, nil); code != http.StatusOK {
		t.Fatalf("admin listener /console/login: %d", code)
	}
	if code, _, _ := do(t, client(t), "GET", adm.URL+"/metrics", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("admin listener /metrics without the token: %d", code)
	}
	// Off loopback without a token, the console is not served at all (the
	// Host header a client sends proves nothing).
	open := httptest.NewServer(app.Admin{Addr: ":9091", Registry: app.NewRegistry(), Console: con}.Handler())
	t.Cleanup(open.Close)
	if code, _, _ := do(t, client(t), "GET", open.URL+"/console/letters", nil, nil); code != http.StatusForbidden {
		t.Fatalf("console on :9091 without a token: %d, want 403", code)
	}
}

// TestConsoleWithoutTokenIsLoopbackOnly: without an admin token a visit
// opens a session at once, but a Host that is not loopback (a rebinding
// page) is refused, and a POST without the session's CSRF token too.
func TestConsoleWithoutTokenIsLoopbackOnly(t *testing.T) {
	e := newEnv(t, console.Config{})
	seq := e.letter(t, 1, "skipcall", dlq.ReasonRejected, 400, "BAD_REQUEST")
	c := client(t)
	code, page, _ := do(t, c, "GET", fmt.Sprintf("%s/console/letters/%d/replay", e.srv.URL, seq), nil, nil)
	if code != http.StatusOK {
		t.Fatalf("confirm page: %d", code)
	}
	good := csrfFrom(t, page)
	req, _ := http.NewRequest("GET", e.srv.URL+"/console/letters", nil)
	req.Host = "evil.example:9091"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("Host evil.example: %d, want 421", resp.StatusCode)
	}
	if code, _, _ := do(t, client(t), "POST", fmt.Sprintf("%s/console/letters/%d/replay", e.srv.URL, seq), url.Values{"csrf": {good}}, nil); code != http.StatusUnauthorized {
		t.Fatalf("POST without the session cookie: %d", code)
	}
	if code, _, _ := do(t, c, "POST", fmt.Sprintf("%s/console/letters/%d/replay", e.srv.URL, seq), url.Values{}, nil); code != http.StatusForbidden {
		t.Fatalf("POST without the CSRF token: %d", code)
	}
	if n := e.msgs(t, e.scfg.EventsStream); n != 0 {
		t.Fatalf("a refused replay published %d events", n)
	}
	if code, _, _ := do(t, c, "POST", fmt.Sprintf("%s/console/letters/%d/replay", e.srv.URL, seq), url.Values{"csrf": {good}}, nil); code != http.StatusSeeOther {
		t.Fatalf("replay with the token: %d", code)
	}
	if e.msgs(t, e.scfg.EventsStream) != 1 || e.msgs(t, e.scfg.DLQStream) != 0 {
		t.Fatal("the replay did not move the letter back to the events stream")
	}
}

// TestEditShowsValidationNextToTheField: an edit that ingest would refuse
// answers 422 with the reason beside the field, and the letter stays.
func TestEditShowsValidationNextToTheField(t *testing.T) {
	e := newEnv(t, console.Config{})
	seq := e.letter(t, 1, "skipcall", dlq.ReasonRejected, 400, "BAD_REQUEST")
	c := client(t)
	u := fmt.Sprintf("%s/console/letters/%d/edit", e.srv.URL, seq)
	_, page, _ := do(t, c, "GET", u, nil, nil)
	csrf := csrfFrom(t, page)
	if !strings.Contains(page, `id="f.city" name="f.city" value="Atlantis"`) {
		t.Fatalf("edit form does not show the patch's city:\n%s", page)
	}
	code, page, _ := do(t, c, "POST", u, url.Values{"csrf": {csrf}, "occurred_at": {"yesterday"}, "f.city": {"Paris"}, "f.firstName": {strings.Repeat("A", 101)}}, nil)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("invalid edit: %d", code)
	}
	for _, want := range []string{`id="problem-patch.firstName">must be 1 to 100 characters`, `id="problem-occurred_at">`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s:\n%s", want, page)
		}
	}
	if !strings.Contains(page, `value="Paris"`) {
		t.Error("the form lost the operator's other edit")
	}
	if e.msgs(t, e.scfg.DLQStream) != 1 || e.msgs(t, e.scfg.EventsStream) != 0 {
		t.Fatal("an invalid edit changed the streams")
	}
	code, _, _ = do(t, c, "POST", u, url.Values{"csrf": {csrf}, "occurred_at": {"2026-11-25T10:00:00Z"}, "f.city": {"Paris"}, "f.firstName": {"Ada"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("valid edit: %d", code)
	}
	if e.msgs(t, e.scfg.DLQStream) != 0 {
		t.Fatal("the edited letter is still in the DLQ")
	}
	ctx := natstest.Context(t)
	s, _ := e.js.Stream(ctx, e.scfg.EventsStream)
	m, err := s.GetLastMsgForSubject(ctx, ">")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m.Data), `"city":"Paris"`) || m.Subject != e.scfg.SubjectPrefix+".patch.skipcall."+contactID(1) {
		t.Fatalf("replayed %s %s", m.Subject, m.Data)
	}
}

// TestListFilters: each filter of the list page selects exactly its
// letters, and the pager runs newest first without gaps or repeats.
func TestListFilters(t *testing.T) {
	e := newEnv(t, console.Config{PageSize: 2})
	type lt struct {
		target string
		reason dlq.Reason
		status int
		code   string
	}
	all := []lt{
		{"skipcall", dlq.ReasonRejected, 400, "BAD_REQUEST"},
		{"skipcall", dlq.ReasonRejected, 404, "NOT_FOUND"},
		{"revyops", dlq.ReasonRejected, 409, ""},
		{"skipcall", dlq.ReasonExhausted, 503, ""},
		{"revyops", dlq.ReasonExhausted, 500, ""},
	}
	for i, l := range all {
		e.letter(t, i+1, l.target, l.reason, l.status, l.code)
	}
	mid := time.Now().UTC() // after every letter's stored time: each was acknowledged

	c := client(t)
	ids := regexp.MustCompile(`<td class="mono">(ev-\d+)</td>`)
	// page returns the event ids the list shows for query, following the pager.
	page := func(query string) []string {
		var out []string
		u := e.srv.URL + "/console/letters?" + query
		for {
			code, body, _ := do(t, c, "GET", u, nil, nil)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d", u, code)
			}
			if strings.Contains(body, `class="problem"`) {
				t.Fatalf("GET %s: the filter was refused:\n%s", u, body)
			}
			for _, m := range ids.FindAllStringSubmatch(body, -1) {
				out = append(out, m[1])
			}
			m := regexp.MustCompile(`<a href="([^"]+)" id="older">`).FindStringSubmatch(body)
			if m == nil {
				return out
			}
			u = e.srv.URL + strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	for _, tc := range []struct {
		name, query string
		want        []int // indexes into all, newest first
	}{
		{"all", "", []int{4, 3, 2, 1, 0}},
		{"target", "target=revyops", []int{4, 2}},
		{"reason", "reason=rejected", []int{2, 1, 0}},
		{"status", "status=404", []int{1}},
		{"error code", "error_code=BAD_REQUEST", []int{0}},
		{"contact", "contact=" + contactID(4), []int{3}},
		{"target and reason", "target=skipcall&reason=retries_exhausted", []int{3}},
		{"until now", "until=" + url.QueryEscape(mid.Format(time.RFC3339Nano)), []int{4, 3, 2, 1, 0}},
		{"since now", "since=" + url.QueryEscape(mid.Format(time.RFC3339Nano)), nil},
		{"since a minute ago, datetime-local form", "since=" + url.QueryEscape(mid.Add(-time.Minute).Format("2006-01-02T15:04")), []int{4, 3, 2, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := page(tc.query)
			var want []string
			for _, i := range tc.want {
				want = append(want, fmt.Sprintf("ev-%d", i+1))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
	code, body, _ := do(t, c, "GET", e.srv.URL+"/console/letters?status=abc", nil, nil)
	if code != http.StatusOK || !strings.Contains(body, "an HTTP status") {
		t.Fatalf("bad status filter: %d", code)
	}
}
