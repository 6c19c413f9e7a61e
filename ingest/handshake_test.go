package ingest_test

import (
	"net/http"
	"testing"
)

// TestSourceHandshakeGrantsTheAskedRate: in the CloudEvents webhook
// validation handshake, a sender that asks for a rate
// (WebHook-Request-Rate) is granted any (WebHook-Allowed-Rate: *); one that
// does not ask is told nothing about rates.
func TestSourceHandshakeGrantsTheAskedRate(t *testing.T) {
	s := startSources(t)
	code, h, _ := s.do("OPTIONS", "/v1/sources/bus", nil, http.Header{"Webhook-Request-Origin": {"eventemitter.example.com"}, "Webhook-Request-Rate": {"120"}})
	if code != http.StatusOK || h.Get("WebHook-Allowed-Rate") != "*" {
		t.Fatalf("OPTIONS asking for a rate: %d, WebHook-Allowed-Rate %q, want *", code, h.Get("WebHook-Allowed-Rate"))
	}
	code, h, _ = s.do("OPTIONS", "/v1/sources/bus", nil, http.Header{"Webhook-Request-Origin": {"eventemitter.example.com"}})
	if code != http.StatusOK || h.Get("WebHook-Allowed-Rate") != "" {
		t.Fatalf("OPTIONS not asking for a rate: %d, WebHook-Allowed-Rate %q, want none", code, h.Get("WebHook-Allowed-Rate"))
	}
}
