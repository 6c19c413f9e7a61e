package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/redact"
)

// Connect dials NATS at url with patchbay's reconnect policy: reconnect
// forever, buffer nothing while disconnected (a publish during an outage fails
// at once instead of being held in memory and lost on a crash). Its errors
// never contain a password or token from url.
func Connect(ctx context.Context, url, creds, name string, opts ...nats.Option) (*nats.Conn, error) {
	o := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(false),
		nats.Timeout(5 * time.Second),
	}
	if creds != "" {
		o = append(o, nats.UserCredentials(creds))
	}
	o = append(o, opts...)
	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, o...)
		ch <- result{nc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			// The URLs may carry a password or a token, and nats.go's own
			// errors can quote them (a URL that does not parse): neither
			// reaches a log line.
			return nil, fmt.Errorf("stream: connect %s: %w", redact.URLs(url), redact.URLError(r.err, url))
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// EventsStreamConfig is the configuration of the events stream: file storage,
// work-queue retention (an acknowledged event is removed), a duplicate window
// for event ids, and publishes refused rather than old events discarded when
// it is full.
func (c Config) EventsStreamConfig() jetstream.StreamConfig {
	sc := jetstream.StreamConfig{
		Name:        c.EventsStream,
		Description: "patchbay: contact patches waiting for delivery",
		Subjects:    []string{c.EventsSubjects()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.DedupWindow,
		MaxAge:      c.EventsMaxAge,
		MaxBytes:    c.MaxBytes,
		Discard:     jetstream.DiscardNew,
	}
	if c.Partitions > 0 {
		sc.SubjectTransform = c.eventsTransform(c.Partitions)
	}
	return sc
}

// DLQStreamConfig is the configuration of the dead-letter stream.
func (c Config) DLQStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.DLQStream,
		Description: "patchbay: events that could not be delivered, with the reason in headers",
		Subjects:    []string{c.DLQSubjects()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  time.Hour,
		MaxAge:      c.DLQMaxAge,
		Discard:     jetstream.DiscardOld,
	}
}

// Ensure creates or updates both streams. An events stream without
// partitions is partitioned in place when c has Partitions (see
// Partitioned routing); a partitioned one keeps its count.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := ensureEvents(ctx, js, c); err != nil {
		return fmt.Errorf("stream: ensure %s: %w", c.EventsStream, err)
	}
	if _, err := CreateOrUpdateStream(ctx, js, c.DLQStreamConfig()); err != nil {
		return fmt.Errorf("stream: ensure %s: %w", c.DLQStream, err)
	}
	return nil
}

// TargetSubjects is the filter of one target's events: "<prefix>.patch.<target>.>".
func (c Config) TargetSubjects(target string) string {
	return c.SubjectPrefix + ".patch." + target + ".>"
}

// TargetConsumer is the name of the durable consumer every worker shares for
// one target: "<Consumer>-<target>". Each target has its own consumer so that
// a target that is paused (rate limit, bad credentials) is simply not
// fetched, while the other keeps flowing.
func (c Config) TargetConsumer(target string) string {
	return c.Consumer + "-" + target
}

// ConsumerConfig is a durable pull consumer over every target's events,
// named Consumer. Workers before per-target consumers used it; the worker
// now deletes it at start (a work-queue stream refuses overlapping
// consumers), and the benchmarks use it for their bare-consumer floor.
func (c Config) ConsumerConfig(ackWait time.Duration, maxAckPending int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "patchbay workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
		FilterSubject: c.EventsSubjects(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// TargetConsumerConfig is the durable pull consumer of one target, shared by
// all workers. MaxDeliver is unlimited: the worker, not JetStream, decides
// when to give up, so an event is never silently abandoned. With
// Partitions it filters the short-form subjects only (ShortSubjects): the
// events stored before the stream was partitioned; workers declare it
// then only while such events remain (see Partitioned routing).
func (c Config) TargetConsumerConfig(target string, ackWait time.Duration, maxAckPending int) jetstream.ConsumerConfig {
	filter := c.TargetSubjects(target)
	if c.Partitions > 0 {
		filter = c.ShortSubjects(target)
	}
	return jetstream.ConsumerConfig{
		Durable:       c.TargetConsumer(target),
		Description:   "patchbay workers: " + target,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// KVBucket names a key-value bucket that belongs with the events stream:
// "<EventsStream>_<suffix>", e.g. PATCHBAY_EVENTS_ATTEMPTS.
func (c Config) KVBucket(suffix string) string {
	return c.EventsStream + "_" + suffix
}

// CreateOrUpdateStream is js.CreateOrUpdateStream that sends an update only
// when the stream exists with another configuration: a create with the same
// configuration changes nothing at the server. Replicas starting together
// then do not update a stream while another creates its consumers (an
// update rewrites the store's configuration, which nats-server v2.15.2 reads
// without a lock while adding a consumer: a data race the race detector
// reports in the embedded test server).
func CreateOrUpdateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.UpdateStream(ctx, cfg)
	}
	return s, err
}

// CreateOrUpdateKeyValue is js.CreateOrUpdateKeyValue that sends an update
// only when the bucket exists with another configuration (see
// CreateOrUpdateStream).
func CreateOrUpdateKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.UpdateKeyValue(ctx, cfg)
	}
	return kv, err
}
