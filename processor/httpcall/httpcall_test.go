package httpcall_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
)

// TestTimeoutBoundsTheWholeCall: the client's Timeout ends a call whose
// answer is late, whether its headers or its body are, as an unknown
// outcome (the request was written: the provider may still apply it),
// while a call whose caller gave up before anything was written reports
// the caller's context error instead.
func TestTimeoutBoundsTheWholeCall(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := processor.NewHTTPClient(200*time.Millisecond, 2)
	for _, path := range []string{"/headers", "/body"} {
		// The caller's own limit, far beyond the timeout: reaching it
		// means the timeout did not end the call.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := httpcall.PatchJSON(ctx, c, srv.URL+path, []byte(`{}`), "Authorization", "Bearer x")
		var pe *processor.Error
		if !errors.As(err, &pe) || pe.Class != processor.ClassUnknown {
			t.Fatalf("%s late: err %v, want an unknown-outcome *processor.Error", path, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := httpcall.PatchJSON(ctx, c, srv.URL+"/headers", []byte(`{}`), "Authorization", "Bearer x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("caller gave up: err %v, want context.Canceled", err)
	}
}

// TestPatchJSONReadsABoundedAnswer: the request carries its body and the
// three headers, and the answer's body is read whole up to MaxResponseBody
// and cut there, with or without a Content-Length; the connection is used
// again after an answer that was cut (its rest drained).
func TestPatchJSONReadsABoundedAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPatch || string(body) != `{"a":1}` || r.Header.Get("X-Api-Key") != "k" ||
			r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		_, _ = w.Write(bytes.Repeat([]byte("x"), n))
	}))
	defer srv.Close()
	c := processor.NewHTTPClient(5*time.Second, 1)
	var conns []net.Conn
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { conns = append(conns, info.Conn) },
	})
	for _, n := range []int{0, 1, 511, 512, 513, 4000, httpcall.MaxResponseBody - 1, httpcall.MaxResponseBody, httpcall.MaxResponseBody + 1, 3 * httpcall.MaxResponseBody} {
		for _, chunked := range []string{"", "1"} {
			u := srv.URL + "/x?n=" + strconv.Itoa(n) + "&chunked=" + chunked
			resp, err := httpcall.PatchJSON(ctx, c, u, []byte(`{"a":1}`), "x-api-key", "k")
			if err != nil || resp.Status != http.StatusOK {
				t.Fatalf("n=%d chunked=%q: status %d, err %v", n, chunked, resp.Status, err)
			}
			if want := min(n, httpcall.MaxResponseBody); len(resp.Body) != want || strings.Trim(string(resp.Body), "x") != "" {
				t.Fatalf("n=%d chunked=%q: body of %d bytes, want %d", n, chunked, len(resp.Body), want)
			}
		}
	}
	for i, conn := range conns {
		if conn != conns[0] {
			t.Fatalf("call %d on a new connection: an answer before it was not drained", i)
		}
	}
}
