package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Event is one change to one contact at one provider.
type Event struct {
	// ID identifies the event; it is the stream's Nats-Msg-Id, so
	// JetStream drops redeliveries of the same id.
	ID string `json:"id"`
	// Target is the provider the patch is applied at.
	Target Target `json:"target"`
	// ContactID is the contact at Target. After Validate it is in canonical
	// form: a decimal without leading zeros for revyops, a lower-case
	// hyphenated UUID for skipcall.
	ContactID string `json:"contact_id"`
	// OccurredAt is when the change happened at the source.
	OccurredAt time.Time `json:"occurred_at"`
	// Patch is the request body sent to the provider, a JSON object.
	Patch json.RawMessage `json:"patch"`
	// Structure is RevyOps' structure query parameter, "FLAT" or "NESTED";
	// it is empty for Skipcall.
	Structure string `json:"structure,omitempty"`
}

// Marshal encodes e as compact JSON, the form stored in the stream. HTML
// characters are not escaped, so a Patch produced by DecodeRequest or Decode
// is stored byte for byte. It does not validate e; it fails, wrapping the
// encoding/json error, when Patch is not valid JSON or OccurredAt cannot be
// encoded (a year outside 0..9999).
func (e *Event) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(e.Patch) + len(e.ID) + len(e.ContactID) + 128)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode event %q: %w", e.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Subject returns "<prefix>.patch.<target>.<contact_id>", the subject e is
// published on, e.g. Subject("contacts") = "contacts.patch.skipcall.<uuid>".
// It assumes e is valid: only then are target and contact id single subject
// tokens.
func (e *Event) Subject(prefix string) string {
	return e.subject(prefix, "patch")
}

// DLQSubject returns "<prefix>.dlq.<target>.<contact_id>", the subject e is
// dead-lettered on. Like Subject it assumes e is valid.
func (e *Event) DLQSubject(prefix string) string {
	return e.subject(prefix, "dlq")
}

// subject joins prefix, kind, target and contact id with dots.
func (e *Event) subject(prefix, kind string) string {
	return prefix + "." + kind + "." + string(e.Target) + "." + e.ContactID
}
