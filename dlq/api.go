package dlq

import (
	"context"
	"errors"
	"time"

	"github.com/patchbay/patchbay/events"
)

// The operator's model of the dead-letter stream, shared by the CLI, the
// admin API and the console: a Filter picks letters, List pages through
// them newest first, Summary counts them, Show opens one, Replay puts a
// selection back on the events stream and Purge deletes one.

// Filter picks dead letters. Every set field must match; the zero Filter
// matches every letter.
type Filter struct {
	// Target is the provider ("revyops", "skipcall").
	Target string `json:"target,omitempty"`
	// ContactID is the contact id at Target, as in the original subject.
	ContactID string `json:"contact_id,omitempty"`
	// Reason is why the letter was dead-lettered.
	Reason Reason `json:"reason,omitempty"`
	// Status is the provider's final HTTP status (0: any).
	Status int `json:"status,omitempty"`
	// ErrorCode is the provider's error code, e.g. Skipcall's
	// "VALIDATION_ERROR".
	ErrorCode string `json:"error_code,omitempty"`
	// Since and Until bound when the letter was dead-lettered: Since <=
	// dead_at < Until. A zero bound is open.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

// Page says which part of a filtered list to return.
type Page struct {
	// Before returns letters with a DLQ sequence below it (0: from the
	// newest). Pass the previous ListResult's Next to get the next page.
	Before uint64 `json:"before,omitempty"`
	// Limit is the most letters returned (0: DefaultLimit; at most MaxLimit).
	Limit int `json:"limit,omitempty"`
}

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// ListResult is one page of letters, newest first.
type ListResult struct {
	Letters []Letter `json:"letters"`
	// Next is the Before of the next (older) page; 0 when this is the last.
	Next uint64 `json:"next,omitempty"`
}

// Count is the number of letters of one reason at one target.
type Count struct {
	Reason Reason `json:"reason"`
	Target string `json:"target"`
	Count  int    `json:"count"`
}

// Summary counts the letters a Filter matches.
type Summary struct {
	Total int `json:"total"`
	// Counts has one entry per (reason, target) with letters, sorted by
	// reason then target.
	Counts []Count `json:"counts"`
	// ByReason and ByTarget are the same counts summed one way.
	ByReason map[Reason]int `json:"by_reason"`
	ByTarget map[string]int `json:"by_target"`
	// Oldest and Newest are when the first and last matching letters were
	// dead-lettered (zero when Total is 0).
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
}

// Selection names the letters Replay or Purge acts on: the letters at Seqs
// when it is not empty, else those Filter matches. A Selection with no Seqs
// and a zero Filter selects nothing unless All is set, so that "everything"
// is always asked for in so many words.
type Selection struct {
	Seqs   []uint64 `json:"seqs,omitempty"`
	Filter Filter   `json:"filter,omitzero"`
	All    bool     `json:"all,omitempty"`
}

// ReplayOptions tune a Replay.
type ReplayOptions struct {
	// RateCap is the most letters replayed per second (0: no cap), so that a
	// replay of 100k letters does not exceed a provider's rate limit.
	RateCap float64
	// DryRun reports what would be replayed, and which fields are already
	// superseded, without publishing or deleting anything.
	DryRun bool
	// Edit, if not nil, is a corrected event replacing the letter's payload;
	// it needs a Selection of exactly one sequence. It is validated exactly
	// like an ingested event (events.Decode): an invalid one fails with an
	// error wrapping ErrInvalidEdit and the *events.ValidationError naming
	// the fields.
	Edit []byte
	// Progress, if set, is called after each letter with its result.
	Progress func(ReplayResult)
}

// Replay outcomes.
const (
	OutcomeReplayed    = "replayed"     // published and acknowledged, letter deleted
	OutcomeWouldReplay = "would_replay" // DryRun: would be published
	OutcomeFailed      = "failed"       // not replayed; the letter stays
)

// Superseded is one field of a replayed event whose applied value is
// already newer: the worker will drop it.
type Superseded struct {
	Field string `json:"field"`
	// EventID and At are the clock of the value that stands.
	EventID string    `json:"event_id"`
	At      time.Time `json:"at"`
}

// ReplayResult is what happened to one letter.
type ReplayResult struct {
	Seq       uint64 `json:"seq"`
	EventID   string `json:"event_id,omitempty"`
	Target    string `json:"target,omitempty"`
	ContactID string `json:"contact_id,omitempty"`
	// Subject is where the event was (or would be) published.
	Subject string `json:"subject,omitempty"`
	Outcome string `json:"outcome"`
	// Error says why the letter failed (Outcome "failed").
	Error string `json:"error,omitempty"`
	// Superseded lists the fields the worker will drop; when it holds every
	// field of the patch, the whole event will be dropped.
	Superseded []Superseded `json:"superseded,omitempty"`

	cause error // the error behind Error, for ReplayOne
}

// ReplayReport sums a Replay up.
type ReplayReport struct {
	Results  []ReplayResult `json:"results"`
	Replayed int            `json:"replayed"`
	Failed   int            `json:"failed"`
	DryRun   bool           `json:"dry_run,omitempty"`
}

// PurgeOptions tune a Purge.
type PurgeOptions struct {
	// DryRun counts what would be deleted without deleting it.
	DryRun bool
}

// PurgeReport sums a Purge up.
type PurgeReport struct {
	// Seqs are the letters deleted (or that would be, with DryRun).
	Seqs   []uint64 `json:"seqs"`
	Purged int      `json:"purged"`
	DryRun bool     `json:"dry_run,omitempty"`
}

// Clocks tells Replay which fields of an event were superseded by newer
// applied values. The composing layer implements it over the per-field
// clocks of processor/lww (dlq does not import processor).
type Clocks interface {
	// Superseded returns the fields of ev whose applied clock is at least
	// as new as ev's (they will be dropped by the worker), sorted by field.
	Superseded(ctx context.Context, ev *events.Event) ([]Superseded, error)
}

// Errors of the operator API, wrapped with details; test with errors.Is.
var (
	// ErrEmptySelection: a Selection with no sequences, a zero Filter and
	// All unset.
	ErrEmptySelection = errors.New("dlq: nothing selected (give sequences, a filter, or all)")
	// ErrInvalidEdit wraps the *events.ValidationError of an edited event.
	ErrInvalidEdit = errors.New("dlq: edited event is not valid")
	// ErrBadRequest: options that do not fit together (an Edit with more
	// than one letter, a bad filter value).
	ErrBadRequest = errors.New("dlq: bad request")
)

// SetClocks lets Replay report superseded fields with c.
func (s *Store) SetClocks(c Clocks) { s.clocks = c }
