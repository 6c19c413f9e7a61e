package ingest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/stream"
)

// TestEventsCarryTheirSource: ingest marks each stored event with where it
// came from (stream.SourceHeader), for the worker's contact history: "api"
// for /v1/events, the source's name for /v1/sources/{name}.
func TestEventsCarryTheirSource(t *testing.T) {
	s := startSources(t)
	importContacts(t, s.Contacts, "source,target,source_id,provider_id\nhubspot,skipcall,123,"+skipAda+"\n")
	if code, body := s.Post(mustJSON(t, skipEvent("evt-api")), nil); code != http.StatusAccepted {
		t.Fatalf("POST /v1/events: %d %s", code, body)
	}
	body := readTestdata(t, "hubspot.json")
	if code, _, resp := s.do("POST", "/v1/sources/hubspot", body, hubspotHeaders(sourceSecrets["HUBSPOT_CLIENT_SECRET"], body, time.Now())); code != http.StatusAccepted {
		t.Fatalf("POST /v1/sources/hubspot: %d %s", code, resp)
	}
	ctx := context.Background()
	str, err := s.JS.Stream(ctx, s.Stream.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{1: "api", 2: "hubspot"} {
		m, err := str.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(stream.SourceHeader); got != want {
			t.Errorf("event %d (%s): %s %q, want %q", seq, m.Subject, stream.SourceHeader, got, want)
		}
	}
}
