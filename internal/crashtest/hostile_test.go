package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// zeroReader yields n bytes of 'a' without allocating them up front.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	for i := range p[:k] {
		p[i] = 'a'
	}
	z.n -= k
	return int(k), nil
}

// TestHostileInput attacks the ingest process with slow, huge, deep and
// malformed requests while a well-behaved client keeps posting: each attack
// gets a bounded, documented answer and the good client keeps being served.
func TestHostileInput(t *testing.T) {
	r := newRig(t)
	r.startIngest(map[string]string{"PATCHBAY_INGEST_READ_HEADER_TIMEOUT": "1s", "PATCHBAY_INGEST_READ_TIMEOUT": "5s"})
	url := "http://" + r.ingAddr + "/v1/events"

	// A well-behaved client posts throughout and records its latencies.
	ctx, cancel := context.WithCancel(context.Background())
	var good []time.Duration
	var goodErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			t0 := time.Now()
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(eventBody(i)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				goodErr = err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				goodErr = fmt.Errorf("good client got %d", resp.StatusCode)
				return
			}
			good = append(good, time.Since(t0))
			time.Sleep(20 * time.Millisecond) // the good client's own pace
		}
	}()

	post := func(body io.Reader, hdr map[string]string) (int, time.Duration) {
		t0 := time.Now()
		req, _ := http.NewRequest(http.MethodPost, url, body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			return 0, time.Since(t0)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(t0)
	}
	deep := strings.Repeat("[", 200000) + strings.Repeat("]", 200000)
	bigArray := "[" + strings.Repeat(`{"id":"x"},`, 9999) + `{"id":"x"}]`
	cases := []struct {
		name  string
		body  func() io.Reader
		hdr   map[string]string
		want  int
		bound time.Duration
	}{
		{"100 MiB body, streamed", func() io.Reader { return io.MultiReader(&zeroReader{n: 100 << 20}) }, nil, http.StatusRequestEntityTooLarge, 10 * time.Second},
		{"deeply nested JSON", func() io.Reader { return strings.NewReader(deep) }, nil, http.StatusBadRequest, 5 * time.Second},
		{"invalid UTF-8", func() io.Reader {
			return strings.NewReader(`{"id":"u","target":"skipcall","contact_id":"c0ffee00-0000-4000-8000-000000000001","occurred_at":"2026-11-25T10:00:00Z","patch":{"city":"\xff\xfe"}}`)
		}, nil, http.StatusBadRequest, 5 * time.Second},
		{"10k-element array", func() io.Reader { return strings.NewReader(bigArray) }, nil, http.StatusUnprocessableEntity, 5 * time.Second},
		{"header flood", func() io.Reader { return strings.NewReader("{}") }, map[string]string{"X-Flood": strings.Repeat("h", 200<<10)}, http.StatusRequestHeaderFieldsTooLarge, 5 * time.Second},
	}
	for _, tc := range cases {
		code, took := post(tc.body(), tc.hdr)
		t.Logf("%-24s → %d in %s", tc.name, code, took.Round(time.Millisecond))
		if code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.want)
		}
		if took > tc.bound {
			t.Errorf("%s: answered after %s, bound %s", tc.name, took, tc.bound)
		}
	}

	// Slowloris: connections that never finish their headers are closed.
	var conns []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", r.ingAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		conns = append(conns, c)
	}
	closed := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := bufio.NewReader(c).ReadByte(); err != nil {
			closed++ // EOF or reset: the server gave up on it
		}
		c.Close()
	}
	t.Logf("slowloris: %d of %d half-open connections closed by the server", closed, len(conns))
	if closed != len(conns) {
		t.Errorf("%d slowloris connections were kept open", len(conns)-closed)
	}

	cancel()
	wg.Wait()
	if goodErr != nil {
		t.Fatalf("the well-behaved client failed during the attacks: %v", goodErr)
	}
	if r.ingest.Exited() {
		t.Fatalf("ingest died:\n%s", r.ingest.Output())
	}
	slices.Sort(good)
	p99 := good[min(len(good)-1, len(good)*99/100)]
	t.Logf("well-behaved client during the attacks: %d requests, p50 %s, p99 %s", len(good), good[len(good)/2].Round(time.Microsecond), p99.Round(time.Microsecond))
	if p99 > 2*time.Second {
		t.Errorf("well-behaved client p99 %s during the attacks", p99)
	}
}
