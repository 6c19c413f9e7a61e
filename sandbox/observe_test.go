package sandbox_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/sandbox"
)

// eventually polls cond until it holds or the test's deadline (at most a
// minute) passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	if d, ok := t.Deadline(); ok && d.Before(deadline) {
		deadline = d.Add(-time.Second)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// held sends a PATCH that the sandbox holds (Faults.Latency is long) until
// the returned cancel is called; done closes when the client has given up.
func held(t *testing.T, srv *httptest.Server, path string, hdr map[string]string, body string) (cancel func(), done <-chan struct{}) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		if resp, err := srv.Client().Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	t.Cleanup(func() { cancelCtx(); <-ch })
	return cancelCtx, ch
}

func TestSkipcallOverlaps(t *testing.T) {
	s, srv := newSkipcall(t, sandbox.SkipcallConfig{AutoCreate: true})
	const other = "11111111-2222-4333-8444-555555555555"

	// Sequential PATCHes never overlap.
	for range 3 {
		if r := call(t, srv, http.MethodPatch, skipURL, skipAuth, `{"city":"A"}`); r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.raw)
		}
	}
	if o := s.Overlaps(); len(o) != 0 {
		t.Fatalf("sequential PATCHes reported as overlapping: %+v", o)
	}

	// Held PATCHes: two for skipID (upper case: the same contact), one for
	// another contact.
	s.SetFaults(sandbox.Faults{Latency: time.Hour})
	cancel1, done1 := held(t, srv, skipURL, skipAuth, `{"city":"B"}`)
	eventually(t, "the first PATCH in flight", func() bool { return s.InFlight(skipID) == 1 })
	cancel2, done2 := held(t, srv, "/v1/contacts/"+strings.ToUpper(skipID), skipAuth, `{"city":"C"}`)
	eventually(t, "the second PATCH in flight", func() bool { return s.InFlight(skipID) == 2 })
	cancel3, done3 := held(t, srv, "/v1/contacts/"+other, skipAuth, `{"city":"D"}`)
	eventually(t, "the other contact's PATCH in flight", func() bool { return s.InFlight(other) == 1 })
	for _, c := range []func(){cancel1, cancel2, cancel3} {
		c()
	}
	<-done1
	<-done2
	<-done3
	eventually(t, "nothing in flight", func() bool { return s.InFlight(skipID) == 0 && s.InFlight(other) == 0 })

	want := []sandbox.Overlap{{Contact: skipID, Count: 1, MaxInFlight: 2}}
	if got := s.Overlaps(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Overlaps = %+v, want %+v", got, want)
	}
	// GETs are not tracked.
	s.SetFaults(sandbox.Faults{})
	call(t, srv, http.MethodGet, skipURL, skipAuth, "")
	if got := s.Overlaps(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a GET: Overlaps = %+v", got)
	}
	if n := s.StatusCounts()[sandbox.StatusClientClosed]; n != 3 {
		t.Fatalf("StatusCounts[%d] = %d, want the 3 abandoned PATCHes", sandbox.StatusClientClosed, n)
	}
}

func TestRevyOpsOverlaps(t *testing.T) {
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{AutoCreate: true})
	s.SetFaults(sandbox.Faults{Latency: time.Hour})
	cancel1, done1 := held(t, srv, "/public/v2/contacts/42", revAuth, `{"first_name":"A"}`)
	eventually(t, "the first PATCH in flight", func() bool { return s.InFlight("42") == 1 })
	cancel2, done2 := held(t, srv, "/public/v2/contacts/042", revAuth, `{"first_name":"B"}`)
	eventually(t, "the second PATCH in flight", func() bool { return s.InFlight("42") == 2 })
	cancel1()
	cancel2()
	<-done1
	<-done2
	eventually(t, "nothing in flight", func() bool { return s.InFlight("42") == 0 })
	want := []sandbox.Overlap{{Contact: "42", Count: 1, MaxInFlight: 2}}
	if got := s.Overlaps(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Overlaps = %+v, want %+v", got, want)
	}
}

func TestSkipcallWindows(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := newClock(start)
	s, srv := newSkipcall(t, sandbox.SkipcallConfig{RatePerMinute: 2, RateWindow: 10 * time.Second, Now: clk.Now, AutoCreate: true})
	if w := s.Windows(); len(w) != 0 {
		t.Fatalf("windows before any request: %+v", w)
	}
	statuses := func() []int {
		var st []int
		for range 3 {
			st = append(st, call(t, srv, http.MethodPatch, skipURL, skipAuth, `{"city":"A"}`).status)
		}
		return st
	}
	if got := statuses(); !reflect.DeepEqual(got, []int{200, 200, 429}) {
		t.Fatalf("first window statuses %v", got)
	}
	clk.Set(start.Add(10 * time.Second)) // the window's end: a new window
	if got := statuses(); !reflect.DeepEqual(got, []int{200, 200, 429}) {
		t.Fatalf("second window statuses %v", got)
	}
	clk.Set(start.Add(25 * time.Second))
	call(t, srv, http.MethodPatch, skipURL, skipAuth, `{"city":"B"}`)
	// A request with an unknown key does not consume (or open) a window.
	call(t, srv, http.MethodPatch, skipURL, map[string]string{"Authorization": "Bearer sk_test_other"}, `{"city":"C"}`)

	want := []sandbox.Window{
		{Key: skipKey, Start: start, End: start.Add(10 * time.Second), Requests: 2, Limited: 1},
		{Key: skipKey, Start: start.Add(10 * time.Second), End: start.Add(20 * time.Second), Requests: 2, Limited: 1},
		{Key: skipKey, Start: start.Add(25 * time.Second), End: start.Add(35 * time.Second), Requests: 1},
	}
	if got := s.Windows(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Windows =\n%+v\nwant\n%+v", got, want)
	}
	counts := s.StatusCounts()
	if counts[200] != 5 || counts[429] != 2 || counts[401] != 1 {
		t.Fatalf("StatusCounts = %v, want 200:5 429:2 401:1", counts)
	}
	// Unlimited sandboxes have no windows.
	s2, srv2 := newSkipcall(t, sandbox.SkipcallConfig{AutoCreate: true})
	call(t, srv2, http.MethodPatch, skipURL, skipAuth, `{"city":"A"}`)
	if w := s2.Windows(); w != nil {
		t.Fatalf("unlimited sandbox has windows %+v", w)
	}
}
