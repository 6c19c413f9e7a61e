package processor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay/patchbay/stream"
)

// lagCollector reports each target's consumer lag from JetStream's
// consumer info, read at every scrape (one request per target, bounded by
// lagTimeout): every replica reports the same numbers, so a dashboard
// takes the max over instances. Nothing is reported for a consumer that
// cannot be read (NATS down, the consumer not declared yet), and
// patchbay_worker_consumer_info_errors_total counts that.
type lagCollector struct {
	w       *Worker
	pending *prometheus.Desc
	ack     *prometheus.Desc
	redel   *prometheus.Desc
	errs    prometheus.Counter
}

// lagTimeout bounds the consumer info requests of one scrape.
const lagTimeout = 2 * time.Second

func newLagCollector(w *Worker) *lagCollector {
	labels := []string{"target", "consumer"}
	return &lagCollector{
		w: w,
		pending: prometheus.NewDesc("patchbay_consumer_pending_messages",
			"Events of the target in the stream not yet delivered to any worker (JetStream num_pending): the backlog.", labels, nil),
		ack: prometheus.NewDesc("patchbay_consumer_ack_pending_messages",
			"Events of the target delivered to a worker and not yet settled (num_ack_pending): in flight, queued or held in workers.", labels, nil),
		redel: prometheus.NewDesc("patchbay_consumer_redelivered_messages",
			"Events of the target delivered more than once and not yet settled (num_redelivered).", labels, nil),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchbay_worker_consumer_info_errors_total",
			Help: "Scrapes for which a target consumer's info could not be read from JetStream (its lag is then not reported).",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ack
	ch <- c.redel
	c.errs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
	defer cancel()
	for _, l := range c.w.lanes {
		name := c.w.scfg.TargetConsumer(l.name)
		info, err := ConsumerLag(ctx, c.w.js, c.w.scfg.EventsStream, name)
		if err != nil {
			c.errs.Inc()
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), l.name, name)
		ch <- prometheus.MustNewConstMetric(c.ack, prometheus.GaugeValue, float64(info.NumAckPending), l.name, name)
		ch <- prometheus.MustNewConstMetric(c.redel, prometheus.GaugeValue, float64(info.NumRedelivered), l.name, name)
	}
	c.errs.Collect(ch)
}

// ConsumerLag reads a target consumer's info from JetStream: its pending,
// ack-pending and redelivered counts, summed with those of the target's
// partition consumers (<consumer>-<p>, see stream.PartitionConsumer) when
// the stream is partitioned. The target consumer itself exists there only
// while events stored before the stream was partitioned remain; without
// it the sum is the partition consumers', and ErrConsumerNotFound is
// returned only when the target has none either. Without partitions it is
// the target consumer's info.
func ConsumerLag(ctx context.Context, js jetstream.JetStream, streamName, consumer string) (*jetstream.ConsumerInfo, error) {
	s, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, err
	}
	partitioned := stream.PartitionsOf(s.CachedInfo().Config) > 0
	var info jetstream.ConsumerInfo
	found := false
	cons, err := s.Consumer(ctx, consumer)
	switch {
	case err == nil:
		info, found = *cons.CachedInfo(), true
	case partitioned && errors.Is(err, jetstream.ErrConsumerNotFound):
		info = jetstream.ConsumerInfo{Stream: streamName, Name: consumer}
	default:
		return nil, err
	}
	if !partitioned {
		return &info, nil
	}
	infos := s.ListConsumers(ctx)
	for ci := range infos.Info() {
		p, ok := strings.CutPrefix(ci.Name, consumer+"-")
		if !ok || !isPartitionToken(p) {
			continue
		}
		found = true
		info.NumPending += ci.NumPending
		info.NumAckPending += ci.NumAckPending
		info.NumRedelivered += ci.NumRedelivered
		info.NumWaiting += ci.NumWaiting
	}
	if err := infos.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("processor: %s of %s: %w", consumer, streamName, jetstream.ErrConsumerNotFound)
	}
	return &info, nil
}
