// Package events defines the contact-change event that patchbay ingests,
// stores in JetStream and applies at a provider: its JSON envelope, the
// validation of that envelope and of the provider-specific patch, and the
// compact encoding and subjects used in the stream.
//
// One event is one change to one contact at one provider:
//
//	{"id": "...", "target": "skipcall"|"revyops", "contact_id": "...",
//	 "occurred_at": "RFC 3339", "patch": {...}, "structure": "FLAT"|"NESTED"}
//
// DecodeRequest parses ingest request bodies, Decode parses stored messages,
// and Event.Marshal produces the stored form. All three check JSON in one
// pass of their own (valid.go) and leave encoding/json the texts they cannot
// decide quickly; Decode reads the stored form positionally and falls back
// to the full decoder for anything else (stored.go).
package events
