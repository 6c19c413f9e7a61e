//go:build unix

package ingest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// benchPatch is a ~1 KiB Skipcall patch, like the in-process bench's.
var benchPatch = `{"firstName":"Ada","lastName":"Lovelace","email":"ada@example.com","company":"Analytical Engines Ltd",` +
	`"city":"London","country":"United Kingdom","role":"Chief Mathematician","url":"https://example.com/ada",` +
	`"linkedinUrl":"https://linkedin.com/in/ada","allowPhoneCalls":true,"phoneNumbers":["+442071234567","+442079876543"],` +
	`"customFields":{"industry":"Computing","team_size":"50-100","notes":"` + string(bytes.Repeat([]byte("n"), 380)) + `"}}`

// appendBenchEvent appends event i of run, for its own contact.
func appendBenchEvent(buf []byte, run string, i int64) []byte {
	buf = append(buf, `{"id":"`...)
	buf = append(buf, run...)
	buf = strconv.AppendInt(buf, i, 10)
	buf = append(buf, `","target":"skipcall","contact_id":"b0b0b0b0-0000-4000-8000-`...)
	n := strconv.FormatInt(i%1e12, 10)
	buf = append(buf, "000000000000"[len(n):]...)
	buf = append(buf, n...)
	buf = append(buf, `","occurred_at":"2026-11-25T10:00:00Z","patch":`...)
	buf = append(buf, benchPatch...)
	return append(buf, '}')
}

// benchBody returns a body of n events (an array when n > 1) numbered from
// first.
func benchBody(run string, first int64, n int) []byte {
	if n == 1 {
		return appendBenchEvent(nil, run, first)
	}
	buf := []byte{'['}
	for k := range n {
		if k > 0 {
			buf = append(buf, ',')
		}
		buf = appendBenchEvent(buf, run, first+int64(k))
	}
	return append(buf, ']')
}

// floorEvent is what the floor handler decodes: the envelope, no checks.
type floorEvent struct {
	ID         string          `json:"id"`
	Target     string          `json:"target"`
	ContactID  string          `json:"contact_id"`
	OccurredAt time.Time       `json:"occurred_at"`
	Patch      json.RawMessage `json:"patch"`
}

// floorHandler is the least an ingest of one event can do: decode it,
// publish it with a message id, wait for the PubAck.
func floorHandler(js jetstream.JetStream, prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev floorEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := js.Publish(r.Context(), prefix+".patch."+ev.Target+"."+ev.ContactID, body, jetstream.WithMsgID(ev.ID)); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// BenchmarkPostEvents drives ingest over HTTP against an embedded JetStream,
// 16 requests in flight, next to the floor that sets a message id (single)
// and JetStream's own async publish of the same events (batch100 ceiling),
// measured in the same run: compare ns/event across sub-benchmarks.
func BenchmarkPostEvents(b *testing.B) {
	s := pbtest.Start(b, pbtest.Options{})
	floor := httptest.NewServer(floorHandler(s.JS, s.Stream.SubjectPrefix))
	b.Cleanup(floor.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var seq atomic.Int64

	post := func(b *testing.B, url string, n int) {
		run := "b" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
		defer reportPerEvent(b, n)()
		b.SetParallelism(8)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				body := benchBody(run, seq.Add(int64(n)), n)
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+pbtest.Token)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	b.Run("single", func(b *testing.B) { post(b, s.Ingest.URL+"/v1/events", 1) })
	b.Run("single-floor", func(b *testing.B) { post(b, floor.URL, 1) })
	b.Run("batch100", func(b *testing.B) { post(b, s.Ingest.URL+"/v1/events", 100) })
	b.Run("batch100-ceiling", func(b *testing.B) {
		// JetStream's async publish of the same events, 100 at a time with
		// as many batches in flight, no HTTP.
		run := "c" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
		defer reportPerEvent(b, 100)()
		b.SetParallelism(8)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			futures := make([]jetstream.PubAckFuture, 100)
			for pb.Next() {
				first := seq.Add(100)
				for k := range futures {
					i := first + int64(k)
					data := appendBenchEvent(nil, run, i)
					subj := s.Stream.SubjectPrefix + ".patch.skipcall.b0b0b0b0-0000-4000-8000-" + strconv.FormatInt(1e12+i%1e12, 10)[1:]
					f, err := s.JS.PublishAsync(subj, data, jetstream.WithMsgID(run+strconv.FormatInt(i, 10)))
					if err != nil {
						b.Error(err)
						return
					}
					futures[k] = f
				}
				for _, f := range futures {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						b.Error(err)
						return
					}
				}
			}
		})
	})
}

// reportPerEvent starts measuring b and returns the function that reports
// wall time and CPU time (user and system, of the whole process: client,
// ingest and the embedded NATS server) per event, n events per operation.
// CPU time per event is what to compare on a shared machine: it does not
// count the time spent waiting for a core.
func reportPerEvent(b *testing.B, n int) func() {
	cpu0 := cpuTime(b)
	return func() {
		events := float64(b.N * n)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
		b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/events, "cpu-ns/event")
	}
}

// cpuTime returns the process's user and system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
