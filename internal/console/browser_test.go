package console_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/app"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
)

// browsers are the executables the browser test looks for, in order;
// PATCHBAY_CHROMIUM names another.
var browsers = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell", "chrome"}

// findBrowser returns the path of a Chromium-family browser, or "".
func findBrowser() string {
	if p := os.Getenv("PATCHBAY_CHROMIUM"); p != "" {
		return p
	}
	for _, b := range browsers {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	return ""
}

// poisonCity is the value the Skipcall stand-in refuses with a 400.
const poisonCity = "Atlantis"

// rejecting answers a PATCH whose body holds poisonCity with Skipcall's
// 400 error body and passes every other request to the sandbox: the real
// provider refusing a value it does not accept.
func rejecting(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if r.Method == http.MethodPatch && bytes.Contains(body, []byte(poisonCity)) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":{"code":"BAD_REQUEST","message":"city: %s is not a known city","status":400}}`, poisonCity)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TestBrowserRoundTrip drives headless Chromium through the console: an
// event the provider refuses is dead-lettered by a real worker, appears in
// the list, opens with its headers, is fixed in the edit form (an invalid
// fix first, refused beside its field), replayed, applied at the provider,
// and gone from the list.
func TestBrowserRoundTrip(t *testing.T) {
	browser := findBrowser()
	if browser == "" {
		t.Skipf("no Chromium-family browser found (looked for %s on PATH, and PATCHBAY_CHROMIUM); install one with: apt-get install -y chromium", strings.Join(browsers, ", "))
	}
	ctx := natstest.Context(t)

	// The pipeline: NATS, ingest, a worker, Skipcall refusing poisonCity.
	s := pbtest.Start(t, pbtest.Options{})
	contact := "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c"
	s.Skipcall.PutContact(contact, map[string]any{"firstName": "Ada", "city": "Lyon"})
	rej := httptest.NewServer(rejecting(s.Skipcall))
	t.Cleanup(rej.Close)
	s.SkipURL = rej.URL
	wcfg := pbtest.WorkerConfig()
	w, err := processor.New(wcfg, processor.Deps{JS: s.JS, Conn: s.NC, Stream: s.Stream, Targets: s.Targets(wcfg, 2*time.Second), Logger: s.Log})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() { stop(); <-done })

	// The console on an admin listener with a token, as the worker serves it.
	con, err := app.NewConsole(s.Log, app.NewDLQStore(s.JS, s.Stream, ""), s.Stream, app.AdminConfig{Token: token}, s.JS, w)
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(app.Admin{Config: app.AdminConfig{Token: token}, Registry: app.NewRegistry(), Console: con}.Handler())
	t.Cleanup(admin.Close)

	s.PostEvent(map[string]any{"id": "ev-browser-1", "target": "skipcall", "contact_id": contact,
		"occurred_at": "2026-11-25T10:00:00Z", "patch": map[string]any{"city": poisonCity, "firstName": "Ada"}})
	store := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix)
	var seq uint64
	pbtest.Eventually(t, 30*time.Second, "the refused event in the dead-letter stream", func() bool {
		res, err := store.List(ctx, dlq.Filter{}, dlq.Page{})
		if err != nil || len(res.Letters) == 0 {
			return false
		}
		seq = res.Letters[0].DLQSeq
		return true
	})

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	shots := t.TempDir()
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // quality 100: PNG (below it, JPEG)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
		if dir := os.Getenv("PATCHBAY_SCREENSHOT_DIR"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, name), png, 0o644)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Sign in: the list sends an unsigned browser to the login form.
	step("open the list, sign in",
		chromedp.Navigate(admin.URL+"/console/letters"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("letters")),
	)
	if got := text("#letters"); !strings.Contains(got, "ev-browser-1") || !strings.Contains(got, "BAD_REQUEST") {
		t.Fatalf("the list does not show the dead letter:\n%s", got)
	}

	// Open it: every header, the event.
	step("open the letter",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#letters a[href$="/letters/%d"]`, seq))),
		chromedp.WaitVisible(chromedp.ID("headers")),
	)
	headers := text("#headers")
	for _, want := range []string{dlq.HeaderReason, "rejected", dlq.HeaderStatus, "400", dlq.HeaderErrorCode, "BAD_REQUEST", dlq.HeaderEventID, "ev-browser-1", dlq.HeaderSubject} {
		if !strings.Contains(headers, want) {
			t.Errorf("the headers lack %q:\n%s", want, headers)
		}
	}
	if got := text("#payload"); !strings.Contains(got, poisonCity) {
		t.Errorf("the event shown lacks the refused value:\n%s", got)
	}
	shot("console-letter.png")

	// Edit: an invalid fix is refused beside its field, nothing replayed.
	step("submit an invalid fix",
		chromedp.Click(chromedp.ID("edit")),
		chromedp.WaitVisible(chromedp.ID("edit-form")),
		chromedp.SetValue(chromedp.CSS(`input[name="f.city"]`), "Paris"),
		chromedp.SetValue(chromedp.CSS(`input[name="f.firstName"]`), strings.Repeat("A", 101)),
		chromedp.Click(chromedp.ID("save-replay")),
		chromedp.WaitVisible(chromedp.CSS(`[id="problem-patch.firstName"]`)),
	)
	if got := text(`[id="problem-patch.firstName"]`); !strings.Contains(got, "100 characters") {
		t.Fatalf("the firstName problem says %q", got)
	}
	if l, err := store.Show(ctx, seq); err != nil || l.EventID != "ev-browser-1" {
		t.Fatalf("the letter after an invalid edit: %v %v", l.EventID, err)
	}
	shot("console-edit-invalid.png")

	// Fix it and replay: the provider applies it, the letter is gone.
	step("fix and replay",
		chromedp.SetValue(chromedp.CSS(`input[name="f.firstName"]`), "Ada"),
		chromedp.Click(chromedp.ID("save-replay")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	if got := text("#flash"); !strings.Contains(got, "Replayed 1") {
		t.Fatalf("flash: %q", got)
	}
	pbtest.Eventually(t, 30*time.Second, "the fixed event applied at Skipcall", func() bool {
		c, _ := s.Skipcall.Contact(contact)
		return c["city"] == "Paris"
	})
	step("the list is empty",
		chromedp.Navigate(admin.URL+"/console/letters"),
		chromedp.WaitVisible(chromedp.ID("letters-empty")),
	)
	if n := s.StreamMsgs(s.Stream.DLQStream); n != 0 {
		t.Fatalf("the dead-letter stream holds %d letters after the replay", n)
	}

	// The overview: targets running, with their lag.
	step("overview", chromedp.Navigate(admin.URL+"/console/"), chromedp.WaitVisible(chromedp.ID("targets")))
	if got := text("#targets"); !strings.Contains(got, "skipcall") || !strings.Contains(got, "running") {
		t.Fatalf("targets:\n%s", got)
	}
	shot("console-overview.png")
}
