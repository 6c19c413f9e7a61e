// Package logtest records what a program logs through log/slog, for tests
// of what an operator would read.
package logtest

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// Record is one record a Recorder kept: its level, message, time, and the
// attributes of the logger that wrote it and of the call, by key. Groups
// are not kept apart.
type Record struct {
	Level slog.Level
	Msg   string
	Time  time.Time
	Attrs map[string]slog.Value
}

// Str returns attribute key as text ("" if absent).
func (r Record) Str(key string) string {
	v, ok := r.Attrs[key]
	if !ok {
		return ""
	}
	return v.String()
}

// Uint returns attribute key as an unsigned number (0 if absent or not a
// number).
func (r Record) Uint(key string) uint64 {
	v, ok := r.Attrs[key]
	if !ok {
		return 0
	}
	switch v.Kind() {
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindInt64:
		return uint64(v.Int64())
	}
	return 0
}

// Recorder is a slog.Handler that keeps every record at every level.
type Recorder struct {
	s     *state
	attrs []slog.Attr
}

type state struct {
	mu   sync.Mutex
	recs []Record
}

// New returns an empty Recorder and a logger writing to it.
func New() (*Recorder, *slog.Logger) {
	r := &Recorder{s: &state{}}
	return r, slog.New(r)
}

// Enabled implements slog.Handler: every level is kept.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (r *Recorder) Handle(_ context.Context, sr slog.Record) error {
	rec := Record{Level: sr.Level, Msg: sr.Message, Time: sr.Time, Attrs: map[string]slog.Value{}}
	for _, a := range r.attrs {
		rec.Attrs[a.Key] = a.Value.Resolve()
	}
	sr.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.Resolve()
		return true
	})
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.s.recs = append(r.s.recs, rec)
	return nil
}

// WithAttrs implements slog.Handler.
func (r *Recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &Recorder{s: r.s, attrs: append(slices.Clip(r.attrs), as...)}
}

// WithGroup implements slog.Handler; keys stay flat.
func (r *Recorder) WithGroup(string) slog.Handler { return r }

// Records returns the records with message msg, in the order logged.
func (r *Recorder) Records(msg string) []Record {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	var out []Record
	for _, rec := range r.s.recs {
		if rec.Msg == msg {
			out = append(out, rec)
		}
	}
	return out
}

// Await polls until at least n records with message msg have been logged,
// and returns them; it fails the test after d.
func (r *Recorder) Await(tb testing.TB, d time.Duration, msg string, n int) []Record {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		if rs := r.Records(msg); len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d log records %q after %s, want %d", len(r.Records(msg)), msg, d, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
