package httpcall_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
)

// TestOutcomeTellsWrittenFromNotWritten: each way a call can fail is
// classed by whether its request was written. Unknown (written, no answer
// read in full): a connection reset after the request arrived, an answer
// cut off. Not sent (nothing written): a refused dial (a fence refusal is
// TestFenceRefusalIsNotAnAttempt's, through the rate budget's transport).
// A 5xx read in full is a definite failure, classified by the provider.
func TestOutcomeTellsWrittenFromNotWritten(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reset":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // a reset, not a clean close
				}
				_ = conn.Close()
			}
		case "/cut":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"id":`))
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		case "/500":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"boom"}`))
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	c := processor.NewHTTPClient(5*time.Second, 2)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		url  string
		want processor.Class // 0: an answer, no error
	}{
		{"reset after the request", context.Background(), srv.URL + "/reset", processor.ClassUnknown},
		{"answer cut off", context.Background(), srv.URL + "/cut", processor.ClassUnknown},
		{"dial refused", context.Background(), closed + "/x", processor.ClassNotSent},
		{"5xx read in full", context.Background(), srv.URL + "/500", 0},
	} {
		resp, err := httpcall.PatchJSON(tc.ctx, c, tc.url, []byte(`{}`), "Authorization", "Bearer x")
		switch {
		case tc.want == 0 && (err != nil || resp.Status != http.StatusInternalServerError):
			t.Errorf("%s: status %d, err %v, want the 500 answered", tc.name, resp.Status, err)
		case tc.want != 0 && processor.ClassOf(err) != tc.want:
			t.Errorf("%s: err %v (class %s), want class %s", tc.name, err, processor.ClassOf(err), tc.want)
		}
	}
}
