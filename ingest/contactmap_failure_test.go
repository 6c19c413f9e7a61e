package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/sources"
)

// flakyContacts is a contact map that maps HubSpot's objectId 123 to
// skipAda and 456 to skipLondon, and fails every lookup of 456 while down
// is set, as a contact map bucket that does not answer would.
type flakyContacts struct {
	down    atomic.Bool
	lookups atomic.Int64
}

var errMapDown = errors.New("contact map: nats: timeout")

func (c *flakyContacts) Get(_ context.Context, source string, target events.Target, sourceID string) (string, error) {
	c.lookups.Add(1)
	switch {
	case source != "hubspot" || target != events.TargetSkipcall:
		return "", sources.ErrUnmapped
	case sourceID == "123":
		return skipAda, nil
	case sourceID == "456" && c.down.Load():
		return "", errMapDown
	case sourceID == "456":
		return skipLondon, nil
	}
	return "", sources.ErrUnmapped
}

// TestContactMapFailureRefusesTheWholeRequest guards "any error of the
// contact map other than a missing mapping fails the request": HubSpot's
// batch, whose second contact's lookup fails, is answered 503 (problem
// type unavailable, Retry-After, no-store), and nothing of it is stored:
// not the event whose contact was mapped, not a dead letter. Once the map
// answers again, the same batch is accepted whole.
func TestContactMapFailureRefusesTheWholeRequest(t *testing.T) {
	t.Parallel()
	contacts := &flakyContacts{}
	contacts.down.Store(true)
	ss := startSourcesWith(t, contacts)

	body := readTestdata(t, "hubspot.json")
	code, hdr, resp := ss.do("POST", "/v1/sources/hubspot", body, hubspotHeaders(sourceSecrets["HUBSPOT_CLIENT_SECRET"], body, time.Now()))
	if code != http.StatusServiceUnavailable {
		t.Fatalf("contact map failing: status %d, want 503: %s", code, resp)
	}
	if contacts.lookups.Load() < 2 {
		t.Fatalf("%d contact lookups; the failing one (objectId 456) was never asked", contacts.lookups.Load())
	}
	var p ingest.Problem
	if err := json.Unmarshal(resp, &p); err != nil {
		t.Fatalf("503 body is not a problem: %v: %s", err, resp)
	}
	if p.Type != ingest.ProblemUnavailable || p.Status != http.StatusServiceUnavailable {
		t.Errorf("problem %+v, want type %s status 503", p, ingest.ProblemUnavailable)
	}
	if got := hdr.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After %q, want 2", got)
	}
	if got := hdr.Get("Content-Type"); got != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", got)
	}
	if n := ss.stored(); n != 0 {
		t.Fatalf("the events stream stored %d messages of a refused request, want 0 (the mapped contact's events too must wait for the retry)", n)
	}
	if n := ss.StreamMsgs(ss.Stream.DLQStream); n != 0 {
		t.Fatalf("the DLQ holds %d letters after a contact map failure, want 0 (a failed lookup is not an unmapped contact)", n)
	}

	// The map answers again: the same batch, retried, is stored whole.
	contacts.down.Store(false)
	code, _, resp = ss.do("POST", "/v1/sources/hubspot", body, hubspotHeaders(sourceSecrets["HUBSPOT_CLIENT_SECRET"], body, time.Now()))
	if code != http.StatusAccepted {
		t.Fatalf("retry with the map answering: status %d: %s", code, resp)
	}
	var acc ingest.SourcesAccepted
	if err := json.Unmarshal(resp, &acc); err != nil {
		t.Fatal(err)
	}
	if acc.Accepted.Accepted != 3 || len(acc.Unmapped) != 0 {
		t.Fatalf("retry answer %+v, want 3 accepted and none unmapped", acc)
	}
	if n := ss.stored(); n != 3 {
		t.Fatalf("events stream holds %d messages after the retry, want 3", n)
	}
}
