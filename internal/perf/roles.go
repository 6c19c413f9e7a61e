package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// The process mode runs each part of the pipeline as its own process. The
// parts that are not patchbay (the load generator, the PATCH target, the
// floors) are roles of the bench itself: 'patchbay bench role NAME [flags]'.

// resultPrefix starts the line a role prints its result on, as JSON.
const resultPrefix = "RESULT "

// Role runs one helper process of the process-mode bench until ctx ends or
// its work is done: target (the PATCH target), load (the load generator),
// floor-ingest (the least HTTP handler that stores an event), ceiling
// (JetStream's own async publish) or consumer (a bare consumer). Load and
// ceiling print their result as a line starting with "RESULT ".
func Role(ctx context.Context, name string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench role "+name, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (target, floor-ingest)")
	natsURL := fs.String("nats", "", "NATS URL (floor-ingest, ceiling, consumer)")
	url := fs.String("url", "", "ingest URL (load) or target base URL (consumer)")
	n := fs.Int("n", 1000, "events to send (load, ceiling)")
	batch := fs.Int("batch", 1, "events per request (load)")
	conns := fs.Int("conns", 64, "connections (load)")
	run := fs.String("run", "r", "event id prefix (load, ceiling)")
	concurrency := fs.Int("concurrency", 32, "PATCHes in flight (consumer)")
	state := fs.Bool("state", false, "read and compare-and-set a KV key per event, as a durable last-writer-wins store must (consumer)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch name {
	case "target":
		return serveTarget(ctx, *addr)
	case "load":
		res, err := load(ctx, *url, *n, *batch, *conns, *run)
		if err != nil {
			return err
		}
		return printResult(out, res)
	case "floor-ingest":
		return serveFloorIngest(ctx, *natsURL, *addr)
	case "ceiling":
		res, err := ceiling(ctx, *natsURL, *n, *run)
		if err != nil {
			return err
		}
		return printResult(out, res)
	case "consumer":
		return consume(ctx, *natsURL, *url, *concurrency, *state)
	}
	return fmt.Errorf("perf: unknown role %q", name)
}

func printResult(out io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s%s\n", resultPrefix, b)
	return err
}

// parseResult finds the result line in a role's output.
func parseResult(output string, v any) error {
	i := strings.LastIndex(output, resultPrefix)
	if i < 0 {
		return fmt.Errorf("perf: no result in output:\n%s", tail(output))
	}
	line, _, _ := strings.Cut(output[i+len(resultPrefix):], "\n")
	return json.Unmarshal([]byte(line), v)
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

// serve runs h on addr until ctx ends.
func serve(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveTarget is a provider that answers every contact PATCH, at either
// provider's path, with 200 at once. GET /count tells how many it answered.
func serveTarget(ctx context.Context, addr string) error {
	var count atomic.Int64
	answer := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		count.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"` + r.PathValue("id") + `"}`))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PATCH /v1/contacts/{id}", answer)
	mux.HandleFunc("PATCH /public/v2/contacts/{id}", answer)
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, count.Load()) })
	return serve(ctx, addr, mux)
}

// LoadResult is what the load generator measured.
type LoadResult struct {
	Events, Requests, Failed int
	Retried                  int           // answers 503 (or no answer) that were retried with the same body
	Elapsed                  time.Duration // first request sent to last answer
	P50, P99, P999           time.Duration // per request
	CPU                      time.Duration // the load generator's own CPU time (user and system), run to end
	LongestGap               time.Duration // longest span without an answered request
}

// Rate is the accepted events per second.
func (r LoadResult) Rate() float64 { return float64(r.Events) / r.Elapsed.Seconds() }

// load posts n events (a unique id and a distinct contact each) to url in
// requests of batch events over conns connections, and measures.
func load(ctx context.Context, url string, n, batch, conns int, run string) (LoadResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	requests := (n + batch - 1) / batch
	var next, failed, retried atomic.Int64
	var mu sync.Mutex
	var lat, done []time.Duration
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var myLat, myDone []time.Duration
			var buf []byte
			for ctx.Err() == nil {
				r := int(next.Add(1)) - 1
				if r >= requests {
					break
				}
				buf = buf[:0]
				first, last := r*batch, min((r+1)*batch, n)
				if batch > 1 {
					buf = append(buf, '[')
				}
				for i := first; i < last; i++ {
					if i > first {
						buf = append(buf, ',')
					}
					buf = appendEvent(buf, run, i)
				}
				if batch > 1 {
					buf = append(buf, ']')
				}
				t0 := time.Now()
				if !post(ctx, client, url, buf, &retried) {
					failed.Add(1)
					continue
				}
				t1 := time.Now()
				myLat = append(myLat, t1.Sub(t0))
				myDone = append(myDone, t1.Sub(start))
			}
			mu.Lock()
			lat, done = append(lat, myLat...), append(done, myDone...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res := LoadResult{Requests: requests, Failed: int(failed.Load()), Retried: int(retried.Load()), Elapsed: time.Since(start)}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Failed > requests/100 {
		return res, fmt.Errorf("perf: %d of %d requests failed", res.Failed, requests)
	}
	res.Events = min(len(lat)*batch, n)
	res.CPU = cpuTime()
	slices.Sort(lat)
	l := latencies(lat)
	res.P50, res.P99, res.P999 = l.p(0.5), l.p(0.99), l.p(0.999)
	slices.Sort(done)
	res.LongestGap = longestGap(done)
	return res, nil
}

// post sends body to url until it is answered 202, like a CRM: an answer
// 503 (with its Retry-After, at most a second) or no answer is retried with
// the same body, so the same event ids, up to 10 times. It reports whether
// the body was accepted.
func post(ctx context.Context, client *http.Client, url string, body []byte, retried *atomic.Int64) bool {
	for attempt := range 10 {
		if attempt > 0 {
			retried.Add(1)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		wait := 50 * time.Millisecond
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusAccepted:
				return true
			case http.StatusServiceUnavailable:
				if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
					wait = min(time.Duration(s)*time.Second, time.Second)
				}
			default:
				return false
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
	return false
}

// longestGap is the longest span between consecutive sorted offsets,
// counting from 0.
func longestGap(sorted []time.Duration) time.Duration {
	var gap, prev time.Duration
	for _, d := range sorted {
		gap = max(gap, d-prev)
		prev = d
	}
	return gap
}

// serveFloorIngest serves floorHandler: decode, publish with the event id
// as Nats-Msg-Id, wait for the PubAck, answer 202.
func serveFloorIngest(ctx context.Context, url, addr string) error {
	nc, err := stream.Connect(ctx, url, "", "bench-floor-ingest")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return serve(ctx, addr, floorHandler(js))
}

// CeilingResult is how long JetStream took to store the events.
type CeilingResult struct {
	Events  int
	Elapsed time.Duration
	CPU     time.Duration // the publisher's own CPU time while it published (not making the events)
}

// cpuTime is this process's CPU time so far (user and system); 0 if it
// cannot be read.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ceiling publishes n bench events straight to JetStream with async
// publishes (no HTTP, no validation) and waits for every PubAck.
func ceiling(ctx context.Context, url string, n int, run string) (CeilingResult, error) {
	nc, err := stream.Connect(ctx, url, "", "bench-ceiling")
	if err != nil {
		return CeilingResult{}, err
	}
	defer nc.Close()
	var failed atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		return CeilingResult{}, err
	}
	subjects, data, ids := make([]string, n), make([][]byte, n), make([]string, n)
	for i := range n {
		subjects[i], data[i], ids[i] = "contacts.patch.skipcall."+contactID(i), eventJSON(run, i), fmt.Sprintf("%s-%d", run, i)
	}
	start, cpu0 := time.Now(), cpuTime()
	for i := range n {
		if err := publishAsync(ctx, js, subjects[i], data[i], ids[i]); err != nil {
			return CeilingResult{}, err
		}
	}
	if err := waitPublished(ctx, js); err != nil {
		return CeilingResult{}, err
	}
	res := CeilingResult{Events: n, Elapsed: time.Since(start), CPU: cpuTime() - cpu0}
	if f := failed.Load(); f > 0 {
		return res, fmt.Errorf("perf: %d of %d async publishes failed", f, n)
	}
	return res, nil
}

// publishAsync publishes without waiting for the PubAck; when too many
// publishes await theirs, it waits for room instead of failing, so a busy
// machine slows the publisher down rather than breaking it.
func publishAsync(ctx context.Context, js jetstream.JetStream, subject string, data []byte, id string) error {
	for {
		_, err := js.PublishAsync(subject, data, jetstream.WithMsgID(id), jetstream.WithStallWait(time.Second))
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// waitPublished waits until every async publish of js has its answer, or ctx ends.
func waitPublished(ctx context.Context, js jetstream.JetStream) error {
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("perf: %d async publishes unanswered: %w", js.PublishAsyncPending(), ctx.Err())
	}
}

// bareConsumerName is the durable of the bare consumer process.
const bareConsumerName = "bench-bare"

// consume is the worker's floor as a process: a durable pull consumer whose
// messages n goroutines PATCH to the target with plain net/http and
// acknowledge; no ordering, retry, classification or validation. It pulls
// with Fetch requests sized by the room left for 2n messages, not with
// Consume or Messages(): in nats.go v1.55.0 both can skip a refill under
// load and wait ~30 s for the missing-heartbeat timer (nats-io/nats.go#1621,
// #1622), which the floor must not measure.
//
// With state, each event also costs what any durable per-contact
// last-writer-wins store in NATS costs at the least: a KV read of the
// contact's key before the PATCH and a compare-and-set write after it,
// with nats.go's KeyValue API, before the ack. It is the floor of
// patchbay's design, not of its code.
func consume(ctx context.Context, url, target string, n int, state bool) error {
	nc, err := stream.Connect(ctx, url, "", "bench-consumer")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	scfg := benchStream(url)
	ccfg := scfg.ConsumerConfig(30*time.Second, 4*n)
	ccfg.Durable = bareConsumerName
	cons, err := js.CreateOrUpdateConsumer(ctx, scfg.EventsStream, ccfg)
	if err != nil {
		return err
	}
	var kv jetstream.KeyValue
	if state {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: benchStateBucket, History: 1, Storage: jetstream.FileStorage})
		if err != nil {
			return err
		}
	}
	room := make(chan struct{}, 2*n)
	for range 2 * n {
		room <- struct{}{}
	}
	msgs := make(chan jetstream.Msg, 2*n)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-msgs:
					bareDeliver(ctx, client, kv, target, m)
					room <- struct{}{}
				}
			}
		}()
	}
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-room:
		}
		k := 1
		for k < 2*n && len(room) > 0 {
			<-room
			k++
		}
		batch, err := cons.Fetch(k, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			select {
			case msgs <- m:
			case <-ctx.Done():
				return nil
			}
		}
		for range k - got {
			room <- struct{}{}
		}
	}
}

// benchStateBucket is the KV bucket of the bare consumer with state.
const benchStateBucket = "BENCH_STATE"

// bareDeliver PATCHes m's event to target and acknowledges it; with kv, it
// reads the contact's key first and compare-and-sets it after the PATCH.
func bareDeliver(ctx context.Context, client *http.Client, kv jetstream.KeyValue, target string, m jetstream.Msg) {
	var ev floorEvent
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		_ = m.Term()
		return
	}
	var rev uint64
	key := "skipcall." + ev.ContactID
	if kv != nil {
		e, err := kv.Get(ctx, key)
		switch {
		case err == nil:
			rev = e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			_ = m.Nak()
			return
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, target+"/v1/contacts/"+ev.ContactID, bytes.NewReader(ev.Patch))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+skKey)
	resp, err := client.Do(req)
	if err != nil {
		_ = m.Nak()
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		_ = m.Nak()
		return
	}
	if kv != nil {
		value := m.Data()[:min(len(m.Data()), 64)] // about the size of a contact's stored clocks
		if rev == 0 {
			_, err = kv.Create(ctx, key, value)
		} else {
			_, err = kv.Update(ctx, key, value, rev)
		}
		if err != nil {
			_ = m.Nak()
			return
		}
	}
	_ = m.Ack()
}

// benchStream is the stream layout of the process-mode bench: patchbay's
// defaults (PATCHBAY_PARTITIONS: events stored by partition).
func benchStream(url string) stream.Config {
	return stream.Config{URL: url, SubjectPrefix: "contacts", EventsStream: "PATCHBAY_EVENTS", DLQStream: "PATCHBAY_DLQ",
		Replicas: 1, DedupWindow: 25 * time.Hour, EventsMaxAge: 168 * time.Hour, DLQMaxAge: 720 * time.Hour, Consumer: "patchbay-worker", MaxBytes: -1,
		Partitions: stream.DefaultPartitions}
}
