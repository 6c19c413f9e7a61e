package console_test

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/console"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor/history"
)

// TestContactPageFromDeadLetter: a contact's dead letter links to its
// contact page, which shows the field applied by the worker with the
// event that set it and the delivery that applied it.
func TestContactPageFromDeadLetter(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	id := "0e0e0e0e-0000-4000-8000-00000000beef"
	s.Skipcall.PutContact(id, map[string]any{"firstName": "Old"})
	cfg := pbtest.WorkerConfig()
	cfg.HistoryMaxAge, cfg.HistoryPerContact = time.Hour, 50
	s.StartWorker(cfg)
	s.PostEvent(map[string]any{"id": "evt-applied", "target": "skipcall", "contact_id": id,
		"occurred_at": "2026-11-25T12:00:00Z", "patch": map[string]any{"firstName": "Newer"}})
	pbtest.Eventually(t, 30*time.Second, "the event applied", func() bool { return s.Skipcall.PatchCount(id) == 1 })
	pbtest.Eventually(t, 30*time.Second, "the events stream drained", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	err := dlq.NewPublisher(s.JS, s.Stream.SubjectPrefix).Publish(context.Background(), dlq.Letter{
		Reason: dlq.ReasonRejected, Status: 400, Attempts: 1, Stream: s.Stream.EventsStream, StreamSeq: 9,
		Subject: s.Stream.SubjectPrefix + ".patch.skipcall." + id, EventID: "evt-dead", Target: "skipcall",
		Data: []byte(`{"id":"evt-dead","target":"skipcall","contact_id":"` + id + `","occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":"Older"}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Config{Letters: dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix), Contacts: history.NewViewer(s.JS, s.Stream)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	cl := client(t)
	code, page, _ := do(t, cl, http.MethodGet, srv.URL+"/console/letters/1", nil, nil)
	m := regexp.MustCompile(`href="([^"]+)" id="contact-link"`).FindStringSubmatch(page)
	if code != http.StatusOK || m == nil {
		t.Fatalf("letter page: %d, no link to the contact:\n%s", code, page)
	}
	var body string
	pbtest.Eventually(t, 30*time.Second, "the contact page with its history", func() bool {
		code, body, _ = do(t, cl, http.MethodGet, srv.URL+html.UnescapeString(m[1]), nil, nil)
		return code == http.StatusOK && strings.Contains(body, `id="history"`)
	})
	fields := body[strings.Index(body, `id="fields"`):strings.Index(body, `id="history"`)]
	for _, want := range []string{"firstName", "evt-applied", "&#34;Newer&#34;", "2026-11-25 12:00:00Z", "api"} {
		if !strings.Contains(fields, want) {
			t.Errorf("contact page's fields: no %q:\n%s", want, fields)
		}
	}
	if hist := body[strings.Index(body, `id="history"`):]; !strings.Contains(hist, "evt-applied") || !strings.Contains(hist, ">200<") {
		t.Errorf("contact page's history: no delivery of evt-applied with 200:\n%s", hist)
	}
}
