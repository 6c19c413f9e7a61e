package dlq

import (
	"encoding/json"
	"strings"
	"time"
)

// Explain says in one line why l is here, in the same shape for every
// target and reason: "HTTP <status>[ <provider code>]: <provider text>"
// when the provider answered, where the text is the provider's own error
// message, else its response excerpt, else our detail; and our detail
// alone when no provider answered (invalid or unmapped events, transport
// failures, JetStream's delivery limit).
func (l Letter) Explain() string {
	if l.Status == 0 {
		return oneLine(l.Detail)
	}
	var b strings.Builder
	b.WriteString("HTTP ")
	b.WriteString(itoa(l.Status))
	if l.ErrorCode != "" {
		b.WriteString(" ")
		b.WriteString(l.ErrorCode)
	}
	text := oneLine(l.ErrorMessage)
	if text == "" {
		text = oneLine(l.Excerpt)
	}
	if text == "" {
		text = oneLine(l.Detail)
	}
	if text != "" {
		b.WriteString(": ")
		b.WriteString(text)
	}
	return b.String()
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// oneLine collapses runs of white space (new lines and tabs included) to
// one space.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// letterJSON is a Letter as the CLI's -json and the admin API show it.
type letterJSON struct {
	Seq             uint64            `json:"seq"`
	DeadAt          time.Time         `json:"dead_at"`
	Reason          Reason            `json:"reason"`
	Explanation     string            `json:"explanation"`
	Detail          string            `json:"detail,omitempty"`
	Status          int               `json:"status,omitempty"`
	ErrorCode       string            `json:"error_code,omitempty"`
	ErrorMessage    string            `json:"error_message,omitempty"`
	Excerpt         string            `json:"excerpt,omitempty"`
	Attempts        int               `json:"attempts"`
	FirstAttempt    time.Time         `json:"first_attempt,omitzero"`
	LastAttempt     time.Time         `json:"last_attempt,omitzero"`
	Target          string            `json:"target,omitempty"`
	ContactID       string            `json:"contact_id,omitempty"`
	EventID         string            `json:"event_id,omitempty"`
	Stream          string            `json:"stream,omitempty"`
	StreamSeq       uint64            `json:"stream_seq,omitempty"`
	Subject         string            `json:"subject,omitempty"`
	DLQSubject      string            `json:"dlq_subject,omitempty"`
	Source          string            `json:"source,omitempty"`
	SourceContactID string            `json:"source_contact_id,omitempty"`
	Headers         map[string]string `json:"headers,omitempty"`
	Payload         json.RawMessage   `json:"payload,omitempty"`
	PayloadRaw      string            `json:"payload_raw,omitempty"`
}

// MarshalJSON writes l with snake_case keys, its Explain line as
// "explanation", and the payload as JSON when it is JSON ("payload"), as a
// string otherwise ("payload_raw"); a letter listed with headers only has
// neither.
func (l Letter) MarshalJSON() ([]byte, error) {
	v := letterJSON{
		Seq: l.DLQSeq, DeadAt: l.DeadAt, Reason: l.Reason, Explanation: l.Explain(), Detail: l.Detail,
		Status: l.Status, ErrorCode: l.ErrorCode, ErrorMessage: l.ErrorMessage, Excerpt: l.Excerpt,
		Attempts: l.Attempts, FirstAttempt: l.FirstAttempt, LastAttempt: l.LastAttempt, Target: l.Target,
		ContactID: l.ContactID(), EventID: l.EventID, Stream: l.Stream, StreamSeq: l.StreamSeq, Subject: l.Subject,
		DLQSubject: l.DLQTopic, Source: l.Source, SourceContactID: l.SourceContactID, Headers: l.Headers,
	}
	switch {
	case len(l.Data) == 0:
	case json.Valid(l.Data):
		v.Payload = json.RawMessage(l.Data)
	default:
		v.PayloadRaw = string(l.Data)
	}
	return json.Marshal(v)
}
