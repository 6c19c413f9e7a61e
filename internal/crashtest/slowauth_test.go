package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowUnauthenticatedSenders: while hundreds of unauthenticated senders
// trickle their bodies in, some with plausible Standard Webhooks headers and
// a forged signature, some with no credentials at all, a client with a
// bearer token keeps getting 202 at its usual p99. The ingest process has
// MAX_IN_FLIGHT=8: a server that let unauthenticated requests hold an
// in-flight slot while their body arrives would shed the good client.
func TestSlowUnauthenticatedSenders(t *testing.T) {
	r := newRig(t)
	r.startIngest(map[string]string{
		"PATCHBAY_INGEST_WEBHOOK_SECRETS":     "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"PATCHBAY_INGEST_MAX_IN_FLIGHT":       "8",
		"PATCHBAY_INGEST_MAX_UNVERIFIED":      "32",
		"PATCHBAY_INGEST_SIGNED_READ_TIMEOUT": "2s",
	})
	url := "http://" + r.ingAddr + "/v1/events"
	good := &http.Client{Timeout: 10 * time.Second}

	// goodRun posts n events with a bearer token, one at a time, and
	// returns the latencies; any answer but 202 fails the test.
	goodRun := func(from, n int) []time.Duration {
		var lat []time.Duration
		for i := from; i < from+n; i++ {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(eventBody(i)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			t0 := time.Now()
			resp, err := good.Do(req)
			if err != nil {
				t.Fatalf("good client, event %d: %v", i, err)
			}
			resp.Body.Close()
			lat = append(lat, time.Since(t0))
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("good client, event %d: status %d, want 202", i, resp.StatusCode)
			}
			time.Sleep(5 * time.Millisecond) // the client's own pace
		}
		return lat
	}
	p99 := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[(len(s)*99+99)/100-1]
	}
	n := size(200, 1000)
	base := p99(goodRun(0, n))

	// The attack: slow senders, half with plausible signature headers.
	attackers := size(200, 1000)
	var answers sync.Map // "signed 503" etc. -> *atomic.Int64
	count := func(key string) *atomic.Int64 {
		v, _ := answers.LoadOrStore(key, new(atomic.Int64))
		return v.(*atomic.Int64)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for a := range attackers {
		kind := "unauthenticated"
		if a%2 == 0 {
			kind = "signed"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				count(fmt.Sprintf("%s %d", kind, slowSend(ctx, r.ingAddr, kind == "signed"))).Add(1)
				select { // a slow sender: reconnect pause, not synchronisation
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	// The attack is at full strength once the unverified pool sheds.
	waitUntil(t, 60*time.Second, "slow signed senders fill the unverified pool (503)", func() bool {
		return count("signed 503").Load() > 0
	})
	attacked := p99(goodRun(n, n))
	stop()
	wg.Wait()

	summary := ""
	answers.Range(func(k, v any) bool {
		summary += fmt.Sprintf(" %s:%d", k, v.(*atomic.Int64).Load())
		return true
	})
	t.Logf("%d slow senders; good client p99 %s before, %s during; answers to attackers:%s",
		attackers, base.Round(time.Microsecond), attacked.Round(time.Microsecond), summary)
	if bound := 4*base + 50*time.Millisecond; attacked > bound {
		t.Errorf("good client p99 %s during the attack, bound %s (4 × %s + 50ms)", attacked, bound, base)
	}
	if count("signed 400").Load()+count("signed 0").Load() == 0 {
		t.Error("no slow signed sender was cut off by SIGNED_READ_TIMEOUT")
	}
	for _, k := range []string{"signed 202", "unauthenticated 202", "unauthenticated 503", "unauthenticated 0"} {
		if c := count(k).Load(); c > 0 {
			t.Errorf("%d attackers answered %q", c, k)
		}
	}
	if count("unauthenticated 401").Load() == 0 {
		t.Error("no unauthenticated sender was answered 401")
	}
	if r.ingest.Exited() {
		t.Fatalf("ingest exited during the attack:\n%s", r.ingest.Output())
	}
}

// slowSend sends one POST whose 100 kB body trickles in at a byte per
// 200 ms, with plausible Standard Webhooks headers (a fresh timestamp and a
// well-formed, forged signature) or none, and returns the status the server
// answered (0: closed without an answer, or ctx ended first).
func slowSend(ctx context.Context, addr string, signed bool) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST /v1/events HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n", addr)
	if signed {
		sig := make([]byte, 32)
		_, _ = rand.Read(sig)
		fmt.Fprintf(&b, "webhook-id: slow-%x\r\nwebhook-timestamp: %d\r\nwebhook-signature: v1,%s\r\n",
			sig[:4], time.Now().Unix(), base64.StdEncoding.EncodeToString(sig))
	}
	b.WriteString("\r\n[")
	if _, err := c.Write(b.Bytes()); err != nil {
		return 0
	}
	status := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case s := <-status:
			return s
		case <-ctx.Done():
			return 0
		case <-tick.C:
			if _, err := c.Write([]byte(" ")); err != nil {
				return <-status
			}
		}
	}
}
