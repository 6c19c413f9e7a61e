// Package dlq publishes events that can never be delivered to the dead-letter
// stream with the reason in headers, and lists and replays them for operators.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reason says why an event was dead-lettered.
type Reason string

// The reasons an event is dead-lettered.
const (
	// ReasonInvalid: the stored message is not a valid event (undecodable, or
	// published straight to NATS bypassing ingest validation).
	ReasonInvalid Reason = "invalid"
	// ReasonRejected: the provider answered with a status that can never
	// succeed for this event (400, 404, 409, RevyOps 401).
	ReasonRejected Reason = "rejected"
	// ReasonExhausted: transient failures went on past the maximum attempts
	// or the maximum retry age.
	ReasonExhausted Reason = "retries_exhausted"
	// ReasonMaxDeliveries: JetStream reported MAX_DELIVERIES for the message
	// (only when an operator set MaxDeliver on the consumer).
	ReasonMaxDeliveries Reason = "max_deliveries"
	// ReasonUnmapped: a source's contact id had no provider id in the
	// contact map when ingest received the event; replay looks it up again.
	ReasonUnmapped Reason = "unmapped"
)

// Header names carried by every dead letter.
const (
	HeaderReason       = "Patchbay-Reason"
	HeaderDetail       = "Patchbay-Detail"
	HeaderStatus       = "Patchbay-Status"
	HeaderErrorCode    = "Patchbay-Error-Code"
	HeaderErrorMessage = "Patchbay-Error-Message"
	HeaderExcerpt      = "Patchbay-Response-Excerpt"
	HeaderAttempts     = "Patchbay-Attempts"
	HeaderFirstAttempt = "Patchbay-First-Attempt"
	HeaderLastAttempt  = "Patchbay-Last-Attempt"
	HeaderStream       = "Patchbay-Stream"
	HeaderStreamSeq    = "Patchbay-Stream-Seq"
	HeaderSubject      = "Patchbay-Subject"
	HeaderEventID      = "Patchbay-Event-Id"
	HeaderTarget       = "Patchbay-Target"
	HeaderDeadAt       = "Patchbay-Dead-Lettered-At"
	// HeaderSource and HeaderSourceContactID name the source and its
	// contact id on an unmapped letter.
	HeaderSource          = "Patchbay-Source"
	HeaderSourceContactID = "Patchbay-Source-Contact-Id"
	// HeaderTraceparent is the W3C traceparent of the trace the event was
	// ingested in (when tracing is on): a dead letter keeps its trace id.
	HeaderTraceparent = "traceparent"
)

// MaxExcerpt bounds the provider response excerpt kept in a header.
const MaxExcerpt = 1024

// Letter is one dead letter: the original payload and why it is here.
type Letter struct {
	Reason       Reason
	Detail       string // our own words: the validation error, the classification
	Status       int    // final HTTP status from the provider, 0 if none
	ErrorCode    string // provider error code (Skipcall error.code)
	ErrorMessage string // provider error message
	Excerpt      string // bounded excerpt of the provider response body
	Attempts     int
	FirstAttempt time.Time
	LastAttempt  time.Time
	Stream       string // original stream
	StreamSeq    uint64 // original stream sequence
	Subject      string // original subject
	EventID      string
	Target       string
	Data         []byte // the original payload, unchanged

	// Traceparent is the original event's W3C traceparent ("" when it was
	// stored without tracing).
	Traceparent string

	// Source and SourceContactID are set on unmapped letters.
	Source          string
	SourceContactID string
	// MsgID is the letter's message id when it has no original stream
	// sequence (an unmapped event: "unmapped:<event id>").
	MsgID string

	// Set when read back from the DLQ stream.
	DLQSeq   uint64
	DeadAt   time.Time
	DLQTopic string
	// Headers holds every header of the stored letter, each with its
	// first value (Show and List fill it; Publish ignores it).
	Headers map[string]string
}

// ErrNotFound is returned by Replay and Get for a sequence not in the DLQ stream.
var ErrNotFound = errors.New("dlq: dead letter not found")

type publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Publisher writes dead letters.
type Publisher struct {
	js     publisher
	prefix string
}

// NewPublisher returns a Publisher writing under <prefix>.dlq.….
func NewPublisher(js publisher, prefix string) *Publisher {
	return &Publisher{js: js, prefix: prefix}
}

// Subject maps an original event subject <prefix>.patch.<rest> to its dead-letter
// subject <prefix>.dlq.<rest>. A subject outside the prefix maps to <prefix>.dlq.unknown.
func Subject(prefix, original string) string {
	if rest, ok := strings.CutPrefix(original, prefix+".patch."); ok && rest != "" {
		return prefix + ".dlq." + rest
	}
	return prefix + ".dlq.unknown"
}

// Publish stores l in the dead-letter stream and waits for JetStream's
// acknowledgement. Only after it returns nil may the caller drop the original.
// The message id is derived from the original stream and sequence, so a
// retried dead-lettering (a crash between Publish and Term) stores one letter.
func (p *Publisher) Publish(ctx context.Context, l Letter) error {
	msg := nats.NewMsg(Subject(p.prefix, l.Subject))
	msg.Data = l.Data
	h := msg.Header
	set := func(k, v string) {
		if v != "" {
			h.Set(k, headerSafe(v, MaxExcerpt))
		}
	}
	set(HeaderReason, string(l.Reason))
	set(HeaderDetail, l.Detail)
	if l.Status != 0 {
		h.Set(HeaderStatus, strconv.Itoa(l.Status))
	}
	set(HeaderErrorCode, l.ErrorCode)
	set(HeaderErrorMessage, l.ErrorMessage)
	set(HeaderExcerpt, l.Excerpt)
	h.Set(HeaderAttempts, strconv.Itoa(l.Attempts))
	if !l.FirstAttempt.IsZero() {
		h.Set(HeaderFirstAttempt, l.FirstAttempt.UTC().Format(time.RFC3339Nano))
	}
	if !l.LastAttempt.IsZero() {
		h.Set(HeaderLastAttempt, l.LastAttempt.UTC().Format(time.RFC3339Nano))
	}
	set(HeaderStream, l.Stream)
	if l.StreamSeq != 0 {
		h.Set(HeaderStreamSeq, strconv.FormatUint(l.StreamSeq, 10))
	}
	set(HeaderSubject, l.Subject)
	set(HeaderEventID, l.EventID)
	set(HeaderTarget, l.Target)
	set(HeaderSource, l.Source)
	if l.SourceContactID != "" {
		h.Set(HeaderSourceContactID, headerSafe(l.SourceContactID, MaxExcerpt))
	}
	h.Set(HeaderDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	if l.Traceparent != "" {
		h.Set(HeaderTraceparent, headerSafe(l.Traceparent, 128))
	}

	var opts []jetstream.PublishOpt
	if l.StreamSeq != 0 {
		opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("dlq:%s:%d", l.Stream, l.StreamSeq)))
	} else if l.MsgID != "" {
		opts = append(opts, jetstream.WithMsgID(l.MsgID))
	}
	if _, err := p.js.PublishMsg(ctx, msg, opts...); err != nil {
		return fmt.Errorf("dlq: publish %s: %w", msg.Subject, err)
	}
	return nil
}

// headerSafe makes s fit a NATS header value: valid UTF-8, no control
// characters (CR/LF would break the header block), at most max bytes.
func headerSafe(s string, max int) string {
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) && len(s) > 0 {
			s = s[:len(s)-1]
		}
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// FromMsg reads a Letter back from a stored dead-letter message.
func FromMsg(subject string, seq uint64, stored time.Time, h nats.Header, data []byte) Letter {
	atoi := func(k string) int { n, _ := strconv.Atoi(h.Get(k)); return n }
	tm := func(k string) time.Time { t, _ := time.Parse(time.RFC3339Nano, h.Get(k)); return t }
	sseq, _ := strconv.ParseUint(h.Get(HeaderStreamSeq), 10, 64)
	l := Letter{
		Reason:       Reason(h.Get(HeaderReason)),
		Detail:       h.Get(HeaderDetail),
		Status:       atoi(HeaderStatus),
		ErrorCode:    h.Get(HeaderErrorCode),
		ErrorMessage: h.Get(HeaderErrorMessage),
		Excerpt:      h.Get(HeaderExcerpt),
		Attempts:     atoi(HeaderAttempts),
		FirstAttempt: tm(HeaderFirstAttempt),
		LastAttempt:  tm(HeaderLastAttempt),
		Stream:       h.Get(HeaderStream),
		StreamSeq:    sseq,
		Subject:      h.Get(HeaderSubject),
		EventID:      h.Get(HeaderEventID),
		Target:       h.Get(HeaderTarget),
		Data:         data,
		DLQSeq:       seq,
		DeadAt:       stored,
		DLQTopic:     subject,
	}
	l.Source, l.SourceContactID = h.Get(HeaderSource), h.Get(HeaderSourceContactID)
	if len(h) > 0 {
		l.Headers = make(map[string]string, len(h))
		for k, v := range h {
			if len(v) > 0 {
				l.Headers[k] = v[0]
			}
		}
	}
	l.Traceparent = h.Get(HeaderTraceparent)
	return l
}
