package processor

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// logTap is a slog.Handler that keeps every record at every level, with the
// attributes of the logger that wrote it, so that a test can check what an
// operator would read. It is for the package's internal tests, which build
// fetchers and workers by hand.
type logTap struct {
	s     *tapState
	attrs []slog.Attr
}

type tapState struct {
	mu   sync.Mutex
	recs []tapRecord
}

// tapRecord is one record a logTap kept: its level, message, time and
// attributes (the logger's, then the call's), by key.
type tapRecord struct {
	Level slog.Level
	Msg   string
	Time  time.Time
	Attrs map[string]slog.Value
}

// newLogTap returns an empty tap and a logger writing to it.
func newLogTap() (*logTap, *slog.Logger) {
	t := &logTap{s: &tapState{}}
	return t, slog.New(t)
}

func (t *logTap) Enabled(context.Context, slog.Level) bool { return true }

func (t *logTap) Handle(_ context.Context, r slog.Record) error {
	rec := tapRecord{Level: r.Level, Msg: r.Message, Time: r.Time, Attrs: map[string]slog.Value{}}
	for _, a := range t.attrs {
		rec.Attrs[a.Key] = a.Value.Resolve()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.Resolve()
		return true
	})
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.s.recs = append(t.s.recs, rec)
	return nil
}

func (t *logTap) WithAttrs(as []slog.Attr) slog.Handler {
	return &logTap{s: t.s, attrs: append(slices.Clip(t.attrs), as...)}
}

// WithGroup is not used by the processor's loggers; keys stay flat.
func (t *logTap) WithGroup(string) slog.Handler { return t }

// records returns the records with message msg, in the order logged.
func (t *logTap) records(msg string) []tapRecord {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	var out []tapRecord
	for _, r := range t.s.recs {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// await polls until at least n records with message msg have been logged,
// and returns them; it fails the test after d.
func (t *logTap) await(tb testing.TB, d time.Duration, msg string, n int) []tapRecord {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		if rs := t.records(msg); len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d log records %q after %s, want %d", len(t.records(msg)), msg, d, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// str returns the attribute key of r as a string ("" if absent).
func (r tapRecord) str(key string) string {
	v, ok := r.Attrs[key]
	if !ok {
		return ""
	}
	return v.String()
}

// seq returns r's "seq" attribute (0 if absent or not a number).
func (r tapRecord) seq() uint64 {
	v, ok := r.Attrs["seq"]
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
