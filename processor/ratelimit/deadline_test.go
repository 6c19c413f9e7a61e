package ratelimit

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stallThenSend waits until the request's deadline has passed, as a
// process stopped between the transport's check and the socket write,
// then hands the request to a real transport.
type stallThenSend struct{ next http.RoundTripper }

func (s stallThenSend) RoundTrip(req *http.Request) (*http.Response, error) {
	dl, _ := req.Context().Deadline()
	for time.Now().Before(dl) {
		time.Sleep(time.Millisecond) // the stop itself: the time passing is the point
	}
	return s.next.RoundTrip(req.WithContext(context.WithoutCancel(req.Context())))
}

// TestRequestPastItsDeadlineIsNotWritten: a request whose deadline passes
// after the transport's first check but before its body is written never
// reaches the server whole.
func TestRequestPastItsDeadlineIsNotWritten(t *testing.T) {
	var got atomic.Int64
	// A request counts once its whole body arrived: a PATCH whose body
	// never came is never applied.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			got.Add(1)
		}
	}))
	defer srv.Close()
	emb := runNATS(t)
	b := replicas(t, emb, 1, testConfig(Unlimited, time.Minute))[0]
	hc := &http.Client{Transport: b.Transport(stallThenSend{next: http.DefaultTransport})}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, srv.URL+"/v1/contacts/x", strings.NewReader(`{"city":"Late"}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = hc.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request past its deadline: err %v, want context.DeadlineExceeded", err)
	}
	// A request sent afterwards on the same client arrives: the server is
	// reachable, so the first one was held back, not lost on the way.
	req2, _ := http.NewRequest(http.MethodPatch, srv.URL+"/v1/contacts/x", strings.NewReader(`{}`))
	resp, err := (&http.Client{Transport: b.Transport(http.DefaultTransport)}).Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := got.Load(); n != 1 {
		t.Fatalf("the server received %d requests, want 1 (only the one sent in time)", n)
	}
}
