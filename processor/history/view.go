package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/lww"
	"github.com/patchbay/patchbay/stream"
)

// Field is one field of a contact as patchbay last applied it.
type Field struct {
	Name string `json:"field"`
	// Value is the JSON patchbay sent for the field (absent when the
	// state was stored by a version that kept clocks only). Personal
	// data: shown to the operator who asked, never logged.
	Value json.RawMessage `json:"value,omitempty"`
	// Set is the clock of the event whose value stands.
	Set Clock `json:"set_by"`
	// Applied is when the worker stored it after the provider's 2xx
	// (zero: unknown, stored by an older version).
	Applied time.Time `json:"applied,omitzero"`
	// Pending is true while a repair is owed: the provider may hold an
	// older value, and the next PATCH for the contact sends this one again.
	Pending bool `json:"repair_pending,omitempty"`
}

// Contact is what patchbay knows of one contact: its fields' provenance
// (the state bucket) and its recent deliveries (the history stream).
type Contact struct {
	Target  events.Target `json:"target"`
	Contact string        `json:"contact"`
	Fields  []Field       `json:"fields"`
	// History is the contact's recent deliveries, oldest first.
	History []Record `json:"history"`
	// Notes say what could not be read (no state bucket, no history
	// stream) without failing the rest.
	Notes []string `json:"notes,omitempty"`
}

// Viewer reads contacts for operators. It never creates or changes a
// bucket or a stream.
type Viewer struct {
	js   jetstream.JetStream
	scfg stream.Config
}

// NewViewer returns a Viewer of the worker's state bucket and history
// stream for scfg's streams.
func NewViewer(js jetstream.JetStream, scfg stream.Config) *Viewer {
	return &Viewer{js: js, scfg: scfg}
}

// Fields returns the contact's fields from the state bucket, sorted by
// name. It fails wrapping lww.ErrNoBucket when no worker has created the
// bucket, lww.ErrInvalid for an id that cannot be a key, or the read's
// error.
func (v *Viewer) Fields(ctx context.Context, target events.Target, contact string) ([]Field, error) {
	in, err := lww.OpenInspector(ctx, v.js, v.scfg.KVBucket("STATE"))
	if err != nil {
		return nil, err
	}
	st, err := in.Get(ctx, target, contact)
	if err != nil {
		return nil, err
	}
	out := make([]Field, 0, len(st.Fields))
	for name, c := range st.Fields {
		out = append(out, Field{
			Name: name, Value: st.Values[name], Applied: c.Applied, Pending: st.IsPending(name),
			Set: Clock{EventID: c.ID, OccurredAt: c.At, Source: c.Source},
		})
	}
	slices.SortFunc(out, func(a, b Field) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// History returns the contact's recent deliveries, oldest first (see
// Read).
func (v *Viewer) History(ctx context.Context, target events.Target, contact string) ([]Record, error) {
	if _, err := lww.Key(target, contact); err != nil {
		return nil, err
	}
	return Read(ctx, v.js, v.scfg, target, contact)
}

// Contact returns both the fields and the history. A missing bucket or
// stream is a note, not an error; an invalid target or contact id fails
// wrapping lww.ErrInvalid.
func (v *Viewer) Contact(ctx context.Context, target events.Target, contact string) (Contact, error) {
	c := Contact{Target: target, Contact: contact, Fields: []Field{}, History: []Record{}}
	if !slices.Contains(events.Targets(), target) {
		return c, fmt.Errorf("%w: unknown target %q", lww.ErrInvalid, target)
	}
	fs, err := v.Fields(ctx, target, contact)
	switch {
	case errors.Is(err, lww.ErrNoBucket):
		c.Notes = append(c.Notes, "no state bucket yet: no worker has run on this NATS")
	case err != nil:
		return c, err
	default:
		c.Fields = fs
	}
	hs, err := v.History(ctx, target, contact)
	switch {
	case errors.Is(err, ErrNoStream):
		c.Notes = append(c.Notes, "no history stream: the workers keep no history (PATCHBAY_WORKER_HISTORY_MAX_AGE=0) or none has run")
	case err != nil:
		return c, err
	case hs != nil:
		c.History = hs
	}
	return c, nil
}
