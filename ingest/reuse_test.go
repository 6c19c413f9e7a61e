package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestConcurrentBatchesStoreTheirOwnPatches posts batches of different
// sizes from many clients at once and reads every stored event back by the
// sequence its 202 gave: each holds the patch that was sent with its id.
// Ingest reads bodies into reused buffers and publishes patches straight
// from them, so a buffer handed to the next request before its events are
// stored would show here as another request's patch. Putting the body back
// right after decoding fails it every time under -race (as CI runs it: the
// detector sees the next request's read into the buffer), about one run in
// four without.
func TestConcurrentBatchesStoreTheirOwnPatches(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	const clients, requests = 16, 20
	want := make(map[string]string) // event id -> its firstName
	var mu sync.Mutex
	seqs := make(map[string]uint64)
	errs := make(chan error, clients*requests)
	var wg sync.WaitGroup
	for c := range clients {
		bodies := make([][]byte, requests)
		for r := range requests {
			var batch []map[string]any
			for i := range 1 + (c*requests+r)%25 {
				id := fmt.Sprintf("c%d-r%d-e%d", c, r, i)
				// Names of different lengths, so bodies of different
				// sizes take each other's buffers.
				name := id + strings.Repeat("x", (c+r+i)%40)
				ev := skipEvent(id)
				ev["patch"] = map[string]any{"firstName": name}
				batch = append(batch, ev)
				want[id] = name
			}
			bodies[r] = mustJSON(t, batch)
		}
		wg.Go(func() {
			for _, body := range bodies {
				acc, err := post(s, body)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, e := range acc.Events {
					seqs[e.ID] = e.Seq
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seqs) != len(want) {
		t.Fatalf("%d events accepted, %d sent", len(seqs), len(want))
	}
	ctx := context.Background()
	str, err := s.JS.Stream(ctx, s.Stream.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for id, seq := range seqs {
		m, err := str.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("event %s at seq %d: %v", id, seq, err)
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("event %s at seq %d: %v", id, seq, err)
		}
		var p struct {
			FirstName string `json:"firstName"`
		}
		if err := json.Unmarshal(ev.Patch, &p); err != nil {
			t.Fatalf("event %s: patch %s: %v", id, ev.Patch, err)
		}
		if ev.ID != id || p.FirstName != want[id] {
			t.Errorf("seq %d: stored event %s with firstName %q, want event %s with %q", seq, ev.ID, p.FirstName, id, want[id])
		}
	}
}

// post posts body to s's ingest and returns its 202 answer; any other
// answer is an error (t.Fatal is not for other goroutines).
func post(s *pbtest.Stack, body []byte) (ingest.Accepted, error) {
	req, err := http.NewRequest(http.MethodPost, s.Ingest.URL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return ingest.Accepted{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pbtest.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ingest.Accepted{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return ingest.Accepted{}, fmt.Errorf("POST: %d %s", resp.StatusCode, b)
	}
	var acc ingest.Accepted
	err = json.Unmarshal(b, &acc)
	return acc, err
}
