package ratelimit

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
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

// countingServer counts the requests whose whole body arrived: a PATCH
// whose body never came is never applied.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	got := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			got.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// TestRequestPastItsDeadlineIsNotWritten: a request whose deadline passes
// after the transport's first check but before its body is written never
// reaches the server whole.
func TestRequestPastItsDeadlineIsNotWritten(t *testing.T) {
	srv, got := countingServer(t)
	emb := natstest.Server(t)
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

// lapseThenSend ends the fence's lease, as a renewal missed while the
// request waited between the transport's check and the socket write, then
// hands the request to a real transport.
type lapseThenSend struct {
	fence *atomic.Int64
	next  http.RoundTripper
}

func (s lapseThenSend) RoundTrip(req *http.Request) (*http.Response, error) {
	s.fence.Store(time.Now().Add(-time.Millisecond).UnixNano())
	return s.next.RoundTrip(req)
}

// TestFenceIsReadAtTheWire: a request carrying a fence (WithFence) is sent
// while the fence is ahead, even past the time it stood at when the
// request began (a renewed lease), and not written once it has passed,
// however late that happens.
func TestFenceIsReadAtTheWire(t *testing.T) {
	srv, got := countingServer(t)
	emb := natstest.Server(t)
	b := replicas(t, emb, 1, testConfig(Unlimited, time.Minute))[0]
	var until atomic.Int64
	fence := func() time.Time { return time.Unix(0, until.Load()) }
	send := func(next http.RoundTripper) error {
		req, err := http.NewRequestWithContext(WithFence(context.Background(), fence), http.MethodPatch, srv.URL+"/v1/contacts/x", strings.NewReader(`{"city":"Fenced"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: b.Transport(next)}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	until.Store(time.Now().Add(-time.Second).UnixNano())
	if err := send(http.DefaultTransport); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fence passed before the request: err %v, want context.DeadlineExceeded", err)
	}
	until.Store(time.Now().Add(time.Minute).UnixNano())
	if err := send(lapseThenSend{fence: &until, next: http.DefaultTransport}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fence passed after the first check: err %v, want context.DeadlineExceeded", err)
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("the server received %d requests past their fence, want 0", n)
	}
	until.Store(time.Now().Add(time.Minute).UnixNano())
	if err := send(http.DefaultTransport); err != nil {
		t.Fatalf("fence ahead: %v", err)
	}
	if n := got.Load(); n != 1 {
		t.Fatalf("the server received %d requests, want 1 (the one sent before its fence)", n)
	}
}

// TestWireFencedConnectionWritesNothingPastTheFence: with a WireFenced
// next, a request whose fence passes after the transport's check (here
// while its connection is being dialled, as a process stopped there) is
// not written by the connection; one whose fence is ahead goes out, and a
// request without a fence sent after it on the same connection is not
// held to that earlier request's fence once it has passed.
func TestWireFencedConnectionWritesNothingPastTheFence(t *testing.T) {
	srv, got := countingServer(t)
	emb := natstest.Server(t)
	b := replicas(t, emb, 1, testConfig(Unlimited, time.Minute))[0]
	var until atomic.Int64
	var lapseOnDial atomic.Bool
	var dials atomic.Int64
	// One connection at a time, kept alive: the last two requests share it.
	tr := &http.Transport{MaxConnsPerHost: 1, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		if lapseOnDial.Load() {
			until.Store(time.Now().Add(-time.Millisecond).UnixNano())
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	hc := &http.Client{Transport: b.Transport(WireFenced(tr))}
	fence := func() time.Time { return time.Unix(0, until.Load()) }
	send := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, srv.URL+"/v1/contacts/x", strings.NewReader(`{"city":"Wire"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	until.Store(time.Now().Add(time.Minute).UnixNano())
	lapseOnDial.Store(true)
	if err := send(WithFence(context.Background(), fence)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fence passed while dialling: err %v, want context.DeadlineExceeded", err)
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("the server received %d requests past their fence, want 0", n)
	}
	lapseOnDial.Store(false)
	until.Store(time.Now().Add(time.Minute).UnixNano())
	if err := send(WithFence(context.Background(), fence)); err != nil {
		t.Fatalf("fence ahead: %v", err)
	}
	dialled := dials.Load()
	until.Store(time.Now().Add(-time.Second).UnixNano()) // that request's fence has since passed
	if err := send(context.Background()); err != nil {
		t.Fatalf("no fence, on the connection of a request whose fence has since passed: %v", err)
	}
	if d := dials.Load(); d != dialled {
		t.Fatalf("%d more dials: the request without a fence did not reuse the connection, so this case was not tested", d-dialled)
	}
	if n := got.Load(); n != 2 {
		t.Fatalf("the server received %d requests, want 2 (those sent before their fence, or without one)", n)
	}
}
