package events

import (
	"encoding/json"
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
	// Patch is the request body sent to the provider, a JSON object. To
	// change a decoded event's patch, assign a new slice: Marshal copies a
	// Patch that DecodeRequest or Decode produced without checking it
	// again, as long as it is the same slice (same start and length).
	Patch json.RawMessage `json:"patch"`
	// Structure is RevyOps' structure query parameter, "FLAT" or "NESTED";
	// it is empty for Skipcall.
	Structure string `json:"structure,omitempty"`

	// checked marks Patch as compact JSON already checked by a decoder.
	checked patchMark
}

// patchMark identifies a patch by its first byte and length.
type patchMark struct {
	first *byte
	n     int
}

// markOf returns the mark of p; p must not be empty.
func markOf(p json.RawMessage) patchMark {
	return patchMark{first: &p[0], n: len(p)}
}

// holds reports whether m marks p.
func (m patchMark) holds(p json.RawMessage) bool {
	return m.first != nil && len(p) == m.n && &p[0] == m.first
}

// Subject returns "<prefix>.patch.<target>.<contact_id>", the subject e is
// published on, e.g. Subject("contacts") = "contacts.patch.skipcall.<uuid>".
// It assumes e is valid: only then are target and contact id single subject
// tokens.
func (e *Event) Subject(prefix string) string {
	return e.subject(prefix, "patch")
}

// AppendSubject appends Subject(prefix) to b, so that the subjects of a
// batch can share one buffer.
func (e *Event) AppendSubject(b []byte, prefix string) []byte {
	b = append(b, prefix...)
	b = append(b, ".patch."...)
	b = append(b, e.Target...)
	b = append(b, '.')
	return append(b, e.ContactID...)
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

// setPatch sets e.Patch to a compact copy of v, a value of a JSON text that
// checkJSON accepted (compacted: without insignificant white space), and
// marks it checked for Marshal.
func (e *Event) setPatch(v []byte, compacted bool) {
	if compacted {
		e.Patch = append(json.RawMessage(nil), v...)
	} else {
		e.Patch = compact(v)
	}
	if len(e.Patch) > 0 {
		e.checked = markOf(e.Patch)
	}
}
