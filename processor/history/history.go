// Package history keeps, per contact, a bounded record of the worker's
// recent deliveries: when each PATCH was sent and how it ended, the events
// merged into it, and the events (or fields) dropped as superseded with the
// newer clock that beat them. It answers "why does this contact say X?"
// beside the per-field state (processor/lww).
//
// Records live in a JetStream stream, <EVENTS_STREAM>_HISTORY, one subject
// per contact (<prefix>.history.<target>.<contact>), bounded by a per-subject
// message cap and a maximum age. The worker writes them with a core NATS
// publish, without waiting for JetStream's acknowledgement: a diagnostic
// record costs the delivery no round trip, and one can be lost (NATS
// unreachable, the stream's leader changing, the stream missing) without
// the delivery noticing. Records hold event ids, clocks, sources, outcome,
// HTTP status and field names: never field values (the state bucket has
// them; they are personal data).
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/stream"
)

// Defaults of Config.
const (
	DefaultMaxAge     = 7 * 24 * time.Hour
	DefaultPerContact = 50
)

// Config bounds the history.
type Config struct {
	// MaxAge is how long a record is kept (0: no history at all).
	MaxAge time.Duration
	// PerContact is how many records are kept per contact, the newest
	// (JetStream's MaxMsgsPerSubject).
	PerContact int
	// Replicas of the stream, as the other streams'.
	Replicas int
}

// Enabled reports whether c keeps any history.
func (c Config) Enabled() bool { return c.MaxAge > 0 && c.PerContact > 0 }

// StreamName is the history stream of the events stream named events.
func StreamName(events string) string { return events + "_HISTORY" }

// Subjects is the wildcard subject of the history stream.
func Subjects(prefix string) string { return prefix + ".history.>" }

// Subject is the subject of one contact's records.
func Subject(prefix string, target events.Target, contact string) string {
	return prefix + ".history." + string(target) + "." + contact
}

// StreamConfig is the history stream's configuration for scfg's streams.
func StreamConfig(scfg stream.Config, c Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StreamName(scfg.EventsStream),
		Description:       "patchbay: each contact's recent deliveries (event ids, clocks, outcomes; no values)",
		Subjects:          []string{Subjects(scfg.SubjectPrefix)},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          max(c.Replicas, 1),
		MaxAge:            c.MaxAge,
		MaxMsgsPerSubject: int64(c.PerContact),
		Discard:           jetstream.DiscardOld,
	}
}

// Ensure creates or updates the history stream.
func Ensure(ctx context.Context, js jetstream.JetStream, scfg stream.Config, c Config) error {
	sc := StreamConfig(scfg, c)
	if _, err := stream.CreateOrUpdateStream(ctx, js, sc); err != nil {
		return fmt.Errorf("history: ensure %s: %w", sc.Name, err)
	}
	return nil
}

// Outcomes of a Record.
const (
	// OutcomeApplied: the provider answered 2xx and the clocks were stored.
	OutcomeApplied = "applied"
	// OutcomeSuperseded: nothing was sent, every field lost to a newer
	// clock.
	OutcomeSuperseded = "superseded"
)

// Clock is a change's clock as a record shows it.
type Clock struct {
	EventID    string    `json:"event_id"`
	OccurredAt time.Time `json:"occurred_at"`
	Source     string    `json:"source,omitempty"`
}

// Event is one event merged into a delivery.
type Event struct {
	Clock
	// Seq is the event's sequence in the events stream.
	Seq uint64 `json:"seq,omitempty"`
}

// Dropped is one field of one event that was not sent: a newer clock
// beat it, stored (the state) or queued with it (another event of the
// same PATCH).
type Dropped struct {
	EventID string `json:"event_id"`
	Field   string `json:"field"`
	// By is the clock that beat it.
	By Clock `json:"by"`
	// Stored is true when By is the stored (applied) clock, false when it
	// is another event merged into the same PATCH.
	Stored bool `json:"stored,omitempty"`
}

// Record is one delivery of one contact.
type Record struct {
	// At is when the outcome was known.
	At      time.Time     `json:"at"`
	Target  events.Target `json:"target"`
	Contact string        `json:"contact"`
	// Outcome is applied, superseded, or the failure's class
	// (permanent, transient, rate_limited, credentials, unknown).
	Outcome string `json:"outcome"`
	// Status is the provider's HTTP status (0: none, nothing was sent or
	// no answer came).
	Status int `json:"status,omitempty"`
	// Fields are the fields the PATCH set, sorted.
	Fields []string `json:"fields,omitempty"`
	// Repaired are the fields sent again with their stored value (a
	// repair owed, see lww.State.Pending), sorted.
	Repaired []string `json:"repaired,omitempty"`
	// Events are the events merged into the delivery, in stream order.
	Events []Event `json:"events"`
	// Dropped are the fields of those events that were not sent.
	Dropped []Dropped `json:"dropped,omitempty"`
	// Seq is the record's sequence in the history stream (set on read).
	Seq uint64 `json:"seq,omitempty"`
}

// AppendJSON appends r as JSON (the same as encoding/json's Marshal,
// without reflection: the worker writes one per delivery).
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"at":`...)
	b = appendTime(b, r.At)
	b = append(b, `,"target":`...)
	b = appendString(b, string(r.Target))
	b = append(b, `,"contact":`...)
	b = appendString(b, r.Contact)
	b = append(b, `,"outcome":`...)
	b = appendString(b, r.Outcome)
	if r.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.Status), 10)
	}
	b = appendStrings(b, `,"fields":`, r.Fields)
	b = appendStrings(b, `,"repaired":`, r.Repaired)
	b = append(b, `,"events":[`...)
	for i := range r.Events {
		if i > 0 {
			b = append(b, ',')
		}
		e := &r.Events[i]
		b = append(b, '{')
		b = appendClock(b, e.Clock)
		if e.Seq != 0 {
			b = append(b, `,"seq":`...)
			b = strconv.AppendUint(b, e.Seq, 10)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if len(r.Dropped) > 0 {
		b = append(b, `,"dropped":[`...)
		for i := range r.Dropped {
			if i > 0 {
				b = append(b, ',')
			}
			d := &r.Dropped[i]
			b = append(b, `{"event_id":`...)
			b = appendString(b, d.EventID)
			b = append(b, `,"field":`...)
			b = appendString(b, d.Field)
			b = append(b, `,"by":{`...)
			b = appendClock(b, d.By)
			b = append(b, '}')
			if d.Stored {
				b = append(b, `,"stored":true`...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendClock(b []byte, c Clock) []byte {
	b = append(b, `"event_id":`...)
	b = appendString(b, c.EventID)
	b = append(b, `,"occurred_at":`...)
	b = appendTime(b, c.OccurredAt)
	if c.Source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, c.Source)
	}
	return b
}

func appendStrings(b []byte, key string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	b = append(b, key...)
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// plain says which bytes a JSON string holds as they are, as
// encoding/json writes them (HTML-escaped): printable ASCII but '"', '\\',
// '<', '>' and '&'. Read only.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as a JSON string: plain ASCII as it is, anything
// else through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plain[s[i]] {
			// A copy: s itself stays off the heap (the common path
			// keeps the caller's record on its stack).
			q, _ := json.Marshal(strings.Clone(s)) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Recorder writes records to the history stream.
type Recorder struct {
	nc     *nats.Conn
	prefix string
	bufs   sync.Pool
}

// NewRecorder returns a Recorder publishing on nc under prefix; nil (a
// Recorder that records nothing) when nc is nil.
func NewRecorder(nc *nats.Conn, prefix string) *Recorder {
	if nc == nil {
		return nil
	}
	return &Recorder{nc: nc, prefix: prefix}
}

// Record publishes r to its contact's subject with a core NATS publish:
// JetStream stores it without an acknowledgement awaited, so it costs the
// delivery no round trip; a record can be lost when NATS is unreachable
// or the stream cannot store it at that moment. It returns the publish's
// error (only the client's: the stream's refusal is not seen). A nil
// Recorder records nothing.
func (rc *Recorder) Record(r *Record) error {
	if rc == nil {
		return nil
	}
	bp, _ := rc.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	subj := (*bp)[:0]
	subj = append(subj, rc.prefix...)
	subj = append(subj, ".history."...)
	subj = append(subj, r.Target...)
	subj = append(subj, '.')
	subj = append(subj, r.Contact...)
	n := len(subj)
	b := r.AppendJSON(subj)
	// nats.go copies subject and data into its write buffer before
	// Publish returns: the buffer is reused.
	err := rc.nc.Publish(string(b[:n]), b[n:])
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		rc.bufs.Put(bp)
	}
	if err != nil {
		return fmt.Errorf("history: publish: %w", err)
	}
	return nil
}

// ErrNoStream means the history stream does not exist: history is off, or
// no worker has started.
var ErrNoStream = errors.New("history: no history stream")

// Read returns the contact's records, oldest first: at most the stream's
// per-contact cap, read one message get at a time (no consumer is
// created: a diagnostic read leaves nothing behind). It fails wrapping
// ErrNoStream when the stream does not exist, or the jetstream error.
func Read(ctx context.Context, js jetstream.JetStream, scfg stream.Config, target events.Target, contact string) ([]Record, error) {
	name := StreamName(scfg.EventsStream)
	str, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNoStream, name)
	}
	if err != nil {
		return nil, fmt.Errorf("history: stream %s: %w", name, err)
	}
	subj := Subject(scfg.SubjectPrefix, target, contact)
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, fmt.Errorf("history: stream %s: %w", name, err)
	}
	n := info.State.Subjects[subj]
	if n == 0 {
		return nil, nil
	}
	// Records written meanwhile may push older ones out: the reads go on
	// past n only while the cap allows.
	limit := max(n, uint64(max(info.Config.MaxMsgsPerSubject, 0)))
	out := make([]Record, 0, n)
	seq := info.State.FirstSeq
	for uint64(len(out)) < limit {
		m, err := str.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("history: read %s: %w", subj, err)
		}
		seq = m.Sequence + 1
		var r Record
		if err := json.Unmarshal(m.Data, &r); err != nil {
			continue // not a record: skipped
		}
		r.Seq = m.Sequence
		out = append(out, r)
	}
	return out, nil
}
