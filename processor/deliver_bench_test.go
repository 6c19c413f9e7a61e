package processor_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// BenchmarkWorkerDrain is the process-mode worker row in one process: b.N
// Skipcall events, one contact each, queued in the stream, then delivered
// by a worker until the stream is empty. ns/op and allocs/op are per
// event, and include the embedded NATS server and the sandbox; profile it
// (-cpuprofile, -memprofile) with a focus on processor to see the
// worker's share.
func BenchmarkWorkerDrain(b *testing.B) {
	s := pbtest.Start(b, pbtest.Options{})
	// A provider that answers every PATCH 200 at once, as the process
	// mode's target does (the sandbox knows no contact of these).
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"x"}`))
	}))
	b.Cleanup(target.Close)
	s.SkipURL = target.URL
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	// The process mode's event: a ~1 KiB Skipcall patch of 13 fields.
	patch, err := json.Marshal(map[string]any{
		"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "company": "Analytical Engines Ltd",
		"city": "London", "country": "United Kingdom", "role": "Chief Mathematician", "url": "https://example.com/ada",
		"linkedinUrl": "https://linkedin.com/in/ada", "allowPhoneCalls": true, "phoneNumbers": []string{"+442071234567", "+442079876543"},
		"customFields": map[string]string{"industry": "Computing", "team_size": "50-100", "notes": strings.Repeat("n", 380)},
	})
	if err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		ev := events.Event{
			ID: fmt.Sprintf("evt-%08d", i), Target: events.TargetSkipcall,
			ContactID:  fmt.Sprintf("0b6c7c8e-6f1d-4a53-9d6e-%012x", i),
			OccurredAt: at.Add(time.Duration(i) * time.Millisecond),
			Patch:      patch,
		}
		data, err := ev.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.JS.PublishAsync(ev.Subject(s.Stream.SubjectPrefix), data, jetstream.WithMsgID(ev.ID)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-s.JS.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("events not stored in a minute")
	}
	cfg := pbtest.WorkerConfig()
	cfg.Concurrency = 16 // the provider clients' connections
	b.ReportAllocs()
	b.ResetTimer()
	w := s.StartWorker(cfg)
	pbtest.Eventually(b, 5*time.Minute, "the stream drained", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	b.StopTimer()
	if err := w.Stop(); err != nil {
		b.Fatal(err)
	}
}
