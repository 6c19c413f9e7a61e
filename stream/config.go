// Package stream declares patchbay's JetStream streams and consumers and
// connects to NATS. The in-process server for dev mode and tests is in
// stream/embedded, so that production binaries do not link nats-server.
package stream

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/patchbay/patchbay/redact"
)

// Config names the NATS connection and the streams patchbay uses. It is filled
// from the environment by envconfig in main (prefix PATCHBAY_).
type Config struct {
	// URL is the NATS server URL list (comma separated). Empty means: run an
	// embedded JetStream server (dev mode only).
	URL string `envconfig:"NATS_URL" desc:"NATS server URLs, comma separated (empty in dev mode: embedded server)"`
	// ConnectWait is how long a service retries its first connection to
	// NATS before it gives up and exits.
	ConnectWait time.Duration `envconfig:"NATS_CONNECT_WAIT" default:"1m" desc:"how long a service retries its first connection to NATS before exiting"`
	// CredsFile is an optional NATS credentials file.
	CredsFile string `envconfig:"NATS_CREDS" desc:"NATS credentials file (optional)"`
	// SubjectPrefix is the first subject token: events go to
	// <prefix>.patch.<target>.<contact_id>, dead letters to <prefix>.dlq.….
	SubjectPrefix string `envconfig:"SUBJECT_PREFIX" default:"contacts" desc:"first subject token for events and dead letters"`
	// EventsStream is the name of the stream holding pending events.
	EventsStream string `envconfig:"EVENTS_STREAM" default:"PATCHBAY_EVENTS" desc:"JetStream stream for pending events"`
	// DLQStream is the name of the stream holding dead letters.
	DLQStream string `envconfig:"DLQ_STREAM" default:"PATCHBAY_DLQ" desc:"JetStream stream for dead letters"`
	// Replicas is the stream replica count (1 for a single server, 3 in a cluster).
	Replicas int `envconfig:"STREAM_REPLICAS" default:"1" desc:"replicas of both streams (3 in a cluster)"`
	// DedupWindow is how long JetStream remembers event ids (Nats-Msg-Id);
	// CRMs retry webhooks for a day, so the default is 25h.
	DedupWindow time.Duration `envconfig:"DEDUP_WINDOW" default:"25h" desc:"how long a repeated event id is dropped as a duplicate"`
	// EventsMaxAge bounds how long an undelivered event stays in the stream.
	EventsMaxAge time.Duration `envconfig:"EVENTS_MAX_AGE" default:"168h" desc:"oldest pending event kept (0: no limit)"`
	// DLQMaxAge bounds how long a dead letter is kept for inspection and replay.
	DLQMaxAge time.Duration `envconfig:"DLQ_MAX_AGE" default:"720h" desc:"oldest dead letter kept (0: no limit)"`
	// Consumer is the durable consumer shared by all workers.
	Consumer string `envconfig:"CONSUMER" default:"patchbay-worker" desc:"durable consumer name shared by all workers"`
	// MaxBytes caps the events stream's size; publishes beyond it fail (ingest answers 503).
	MaxBytes int64 `envconfig:"EVENTS_MAX_BYTES" default:"-1" desc:"events stream size cap in bytes (-1: none); ingest answers 503 when full"`
	// Partitions spreads each target's events over this many consumers by
	// contact, each delivered to one worker at a time, so that a contact's
	// events meet in one worker (see partition.go). 0: one consumer per
	// target shared by every worker. Fixed once the stream is partitioned.
	// The default is DefaultPartitions.
	Partitions int `envconfig:"PARTITIONS" default:"4" desc:"partitions of each target's events by contact, each delivered to one worker at a time, so at most this many workers share a target's deliveries (0: none); fixed once the events stream is partitioned"`
}

// LogValue shows c in logs with the passwords and tokens of its URLs
// replaced by "xxxxx".
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", redact.URLs(c.URL)), slog.String("events_stream", c.EventsStream),
		slog.String("dlq_stream", c.DLQStream), slog.Int("replicas", c.Replicas))
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.SubjectPrefix == "" || strings.ContainsAny(c.SubjectPrefix, " *>\t"):
		return fmt.Errorf("stream: subject prefix %q must be a non-empty subject without wildcards", c.SubjectPrefix)
	case c.EventsStream == "" || c.DLQStream == "" || c.EventsStream == c.DLQStream:
		return fmt.Errorf("stream: events stream %q and DLQ stream %q must be distinct names", c.EventsStream, c.DLQStream)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("stream: replicas %d out of range 1..5", c.Replicas)
	case c.DedupWindow <= 0:
		return fmt.Errorf("stream: dedup window must be positive")
	case c.Consumer == "":
		return fmt.Errorf("stream: consumer name is empty")
	case c.Partitions < 0 || c.Partitions > MaxPartitions:
		return fmt.Errorf("stream: partitions %d out of range 0..%d", c.Partitions, MaxPartitions)
	}
	return nil
}

// EventsSubjects is the wildcard subject of the events stream.
func (c Config) EventsSubjects() string { return c.SubjectPrefix + ".patch.>" }

// DLQSubjects is the wildcard subject of the dead-letter stream.
func (c Config) DLQSubjects() string { return c.SubjectPrefix + ".dlq.>" }

// KeyToken reports whether s can be one dot-separated token of a NATS KV
// key: not empty, and made of letters, digits, '-', '_', '=' and '/' (the
// characters nats.go's KeyValue accepts in a key, but the dot).
func KeyToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=', c == '/':
		default:
			return false
		}
	}
	return true
}
