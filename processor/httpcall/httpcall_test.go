package httpcall_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
)

// TestTimeoutBoundsTheWholeCall: the client's Timeout ends a call whose
// answer is late, whether its headers or its body are, as a transient
// error (tried again), while a call whose caller gave up reports the
// caller's context error instead.
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
		if !errors.As(err, &pe) || pe.Class != processor.ClassTransient {
			t.Fatalf("%s late: err %v, want a transient *processor.Error", path, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := httpcall.PatchJSON(ctx, c, srv.URL+"/headers", []byte(`{}`), "Authorization", "Bearer x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("caller gave up: err %v, want context.Canceled", err)
	}
}
