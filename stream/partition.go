package stream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
)

// Partitioned routing
//
// With Config.Partitions = N > 0 the events stream rewrites each event's
// subject as it stores it (a stream subject transform):
//
//	<prefix>.patch.<target>.<contact>  →  <prefix>.patch.<target>.<p>.<contact>
//
// where p = partition(N, contact) is FNV-1a of the contact id modulo N,
// computed by nats-server. Each (target, partition) has its own durable
// consumer, <Consumer>-<target>-<p>, with the pinned_client priority
// policy: JetStream delivers its messages to one pull client at a time, so
// every event of a contact reaches the same worker for as long as that
// worker keeps pulling. Publishers (ingest, DLQ replays) keep publishing
// the short form; the server adds the partition.
//
// Upgrade in place (a stream created without partitions): Ensure first
// narrows the existing per-target consumers from <prefix>.patch.<target>.>
// to <prefix>.patch.<target>.* (the short form only: exactly the events
// already stored, which they keep delivering, their unacknowledged ones
// included), then creates the partition consumers (filters with one token
// more: no overlap, which a work-queue stream refuses), and only then adds
// the transform to the stream. From then on every new event is stored
// partitioned and delivered by a partition consumer; the old ones drain
// through the narrowed consumer, which workers keep fetching. No event
// matches two consumers, so none is delivered by both. A worker of the
// previous version still running keeps fetching its narrowed consumer and
// sees only short-form subjects; one started afterwards cannot widen it
// back (the partition consumers overlap), so it cannot receive a subject
// form it does not know.
//
// The narrowed consumer is needed only while short-form events remain:
// once the transform is in place no event is stored in the short form
// again (its source matches every short-form subject), so when the stream
// holds none of a target's (ShortFormLeft: none stored, hence none pending
// or unacknowledged either, a work-queue stream keeping every event until
// it is acknowledged), workers delete the target's narrowed consumer and
// stop fetching it. On a stream created partitioned they never declare
// it. Either way a worker of the previous version started later is
// refused as before: creating its consumer over <prefix>.patch.<target>.>
// overlaps the partition consumers, as widening the narrowed one did, so
// it retries its setup and receives nothing. One of the previous version
// still fetching the deleted consumer gets nothing more: there is nothing
// left for it, and declaring it again over every subject form is refused.
//
// The partition count is fixed once the stream is partitioned: Ensure
// keeps the count in the stream's transform whatever Partitions says, and
// workers read it from the stream (PartitionsOf), so every replica agrees.

// DefaultPartitions is Config.Partitions' default. Every partition is a
// consumer per target, and nats-server checks each of a work-queue
// stream's consumers on every acknowledgement and scans past the other
// partitions' messages on every fetch: its work per event grows with the
// count (docs/evidence.md: 1.46× the durable-state floor's at 16, 1.28× at
// 8, 1.13-1.24× at 4). Four lets four workers share a target's deliveries,
// more than a provider limited to 100 or 1,000 requests a minute can use.
const DefaultPartitions = 4

// PartitionGroup is the priority group of every partition consumer.
const PartitionGroup = "patchbay"

// MaxPartitions bounds Config.Partitions.
const MaxPartitions = 256

// partitionArg finds the count in a transform destination's partition().
var partitionArg = regexp.MustCompile(`\{\{\s*[pP]artition\s*\(\s*(\d+)\s*,`)

// eventsTransform is the subject transform adding the partition token to
// short-form event subjects. A subject that already has it (five tokens
// after the prefix) does not match the source and is stored as it is.
func (c Config) eventsTransform(n int) *jetstream.SubjectTransformConfig {
	p := c.SubjectPrefix + ".patch."
	return &jetstream.SubjectTransformConfig{
		Source:      p + "*.*",
		Destination: p + "{{wildcard(1)}}.{{partition(" + strconv.Itoa(n) + ",2)}}.{{wildcard(2)}}",
	}
}

// PartitionsOf returns the partition count of an events stream's
// configuration: the count of its transform, 0 if it has none.
func PartitionsOf(sc jetstream.StreamConfig) int {
	if sc.SubjectTransform == nil {
		return 0
	}
	m := partitionArg.FindStringSubmatch(sc.SubjectTransform.Destination)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// PartitionOf returns the partition nats-server stores contact's events in
// when the stream has n partitions: FNV-1a of the contact id modulo n.
func PartitionOf(contact string, n int) int {
	if n <= 0 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(contact))
	return int(h.Sum32() % uint32(n))
}

// SplitSubject splits an event subject, short or partitioned, into its
// target, partition (-1 for the short form) and contact id.
func SplitSubject(prefix, subject string) (target string, partition int, contact string, ok bool) {
	rest, found := strings.CutPrefix(subject, prefix)
	if !found {
		return "", 0, "", false
	}
	rest, found = strings.CutPrefix(rest, ".patch.")
	if !found {
		return "", 0, "", false
	}
	target, rest, found = strings.Cut(rest, ".")
	if !found || target == "" || rest == "" {
		return "", 0, "", false
	}
	first, second, two := strings.Cut(rest, ".")
	if !two {
		return target, -1, first, true
	}
	if strings.Contains(second, ".") || second == "" {
		return "", 0, "", false
	}
	p, err := strconv.Atoi(first)
	if err != nil || p < 0 || strconv.Itoa(p) != first {
		return "", 0, "", false
	}
	return target, p, second, true
}

// CanonicalSubject returns the short form <prefix>.patch.<target>.<contact>
// of an event subject stored partitioned, and any other subject as it is.
// Dead letters keep the short form, so a replay is partitioned again by
// the stream as it stands.
func CanonicalSubject(prefix, subject string) string {
	target, p, contact, ok := SplitSubject(prefix, subject)
	if !ok || p < 0 {
		return subject
	}
	return prefix + ".patch." + target + "." + contact
}

// PartitionSubjects is the filter of one partition of a target:
// "<prefix>.patch.<target>.<p>.*".
func (c Config) PartitionSubjects(target string, p int) string {
	return c.SubjectPrefix + ".patch." + target + "." + strconv.Itoa(p) + ".*"
}

// ShortSubjects is the filter of one target's events stored in the short
// form, before the stream was partitioned: "<prefix>.patch.<target>.*".
func (c Config) ShortSubjects(target string) string {
	return c.SubjectPrefix + ".patch." + target + ".*"
}

// ShortFormLeft reports whether the events stream s stores any event of
// target in the short form: one stored before the stream was partitioned,
// delivered or not, acknowledged not yet. On a partitioned stream none is
// stored again, so once it reports false it does for good.
func ShortFormLeft(ctx context.Context, s jetstream.Stream, c Config, target string) (bool, error) {
	_, err := s.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(c.ShortSubjects(target)))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	}
	return false, fmt.Errorf("stream: short-form events of %s in %s: %w", target, c.EventsStream, err)
}

// PartitionConsumer is the durable consumer of one partition of a target:
// "<Consumer>-<target>-<p>".
func (c Config) PartitionConsumer(target string, p int) string {
	return c.TargetConsumer(target) + "-" + strconv.Itoa(p)
}

// PartitionConsumerConfig is the durable pull consumer of one partition of
// a target: pinned to one pull client at a time (PartitionGroup), the pin
// passing to another client once the pinned one has not pulled for
// pinnedTTL.
func (c Config) PartitionConsumerConfig(target string, p int, ackWait, pinnedTTL time.Duration, maxAckPending int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.PartitionConsumer(target, p),
		Description:    fmt.Sprintf("patchbay workers: %s, partition %d", target, p),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  maxAckPending,
		FilterSubject:  c.PartitionSubjects(target, p),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{PartitionGroup},
		PinnedTTL:      pinnedTTL,
	}
}

// shortFilter is the filter of a consumer of short-form subjects only, for
// a filter over every form: "<prefix>.patch.>" becomes
// "<prefix>.patch.*.*", "<prefix>.patch.<target>.>" becomes
// "<prefix>.patch.<target>.*". Any other filter is returned as it is.
func (c Config) shortFilter(filter string) string {
	p := c.SubjectPrefix + ".patch."
	rest, ok := strings.CutPrefix(filter, p)
	switch {
	case !ok:
		return filter
	case rest == ">":
		return p + "*.*"
	case strings.HasSuffix(rest, ".>") && !strings.Contains(strings.TrimSuffix(rest, ".>"), "."):
		return strings.TrimSuffix(filter, ">") + "*"
	}
	return filter
}

// Default consumer settings of partition consumers Ensure creates ahead of
// any worker; a worker updates them to its own at start.
const (
	defaultAckWait       = 30 * time.Second
	defaultMaxAckPending = 1024
)

// ensureEvents creates the events stream, or brings an existing one to c,
// partitioning it in place (see Partitioned routing) when c asks for
// partitions and it has none.
func ensureEvents(ctx context.Context, js jetstream.JetStream, c Config) error {
	want := c.EventsStreamConfig()
	s, err := js.Stream(ctx, c.EventsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = CreateOrUpdateStream(ctx, js, want)
		return err
	}
	if err != nil {
		return err
	}
	have := PartitionsOf(s.CachedInfo().Config)
	switch {
	case have > 0:
		// Fixed once set: the stream's count wins.
		want.SubjectTransform = c.eventsTransform(have)
	case c.Partitions > 0:
		if err := c.preparePartitions(ctx, js, s, c.Partitions); err != nil {
			return err
		}
	}
	_, err = CreateOrUpdateStream(ctx, js, want)
	return err
}

// preparePartitions readies a stream without partitions for its transform:
// consumers over every subject form narrowed to the short form, and the
// partition consumers of every target created.
func (c Config) preparePartitions(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, n int) error {
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		cons, err := s.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stream: consumer %s: %w", name, err)
		}
		cc := cons.CachedInfo().Config
		if short := c.shortFilter(cc.FilterSubject); short != cc.FilterSubject {
			cc.FilterSubject = short
			if _, err := s.UpdateConsumer(ctx, cc); err != nil {
				return fmt.Errorf("stream: narrow consumer %s to %s: %w", name, short, err)
			}
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("stream: list consumers of %s: %w", c.EventsStream, err)
	}
	for _, t := range events.Targets() {
		for p := range n {
			cc := c.PartitionConsumerConfig(string(t), p, defaultAckWait, defaultAckWait, defaultMaxAckPending)
			if _, err := s.CreateConsumer(ctx, cc); err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
				return fmt.Errorf("stream: consumer %s: %w", cc.Durable, err)
			}
		}
	}
	return nil
}

// EventsPartitions returns the partition count of the events stream as it
// is in NATS (0: not partitioned).
func EventsPartitions(ctx context.Context, js jetstream.JetStream, c Config) (int, error) {
	s, err := js.Stream(ctx, c.EventsStream)
	if err != nil {
		return 0, fmt.Errorf("stream: %s: %w", c.EventsStream, err)
	}
	return PartitionsOf(s.CachedInfo().Config), nil
}
