// Package app wires patchbay's production parts into runnable services
// (ingest, worker) and operator commands (dlq, env). The cmd packages only
// call Main; dev mode and the load harness are added by the patchbay binary
// from package internal/dev, so that cmd/ingest and cmd/worker link neither
// an embedded NATS server nor the sandboxes.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/redact"
	"github.com/patchbay/patchbay/stream"
)

// Connect dials NATS and ensures the streams, retrying with backoff for up
// to scfg.ConnectWait (a minute if unset) so that a service started before
// NATS does not crash-loop. Neither its log lines nor its error contain a
// password or token from scfg.URL.
//
// When scfg.URL is empty, Connect uses the NATS server of the 'patchbay dev'
// running on this machine (see FindDev) and logs that it did; when there is
// none, the error wraps ErrNoDev and says what to set.
func Connect(ctx context.Context, log *slog.Logger, scfg stream.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	if scfg.URL == "" {
		info, path, err := FindDev()
		if err != nil {
			return nil, nil, fmt.Errorf("PATCHBAY_NATS_URL is not set and %w: set PATCHBAY_NATS_URL to the NATS servers "+
				"(e.g. PATCHBAY_NATS_URL=nats://127.0.0.1:4222), or start 'patchbay dev' on this machine", err)
		}
		log.Info("PATCHBAY_NATS_URL is not set: using the running 'patchbay dev'", "url", redact.URLs(info.NATSURL),
			"dev_pid", info.PID, "dev_file", path)
		scfg.URL = info.NATSURL
	}
	wait := scfg.ConnectWait
	if wait <= 0 {
		wait = time.Minute
	}
	var nc *nats.Conn
	var js jetstream.JetStream
	op := func() error {
		var err error
		if nc == nil {
			nc, err = stream.Connect(ctx, scfg.URL, scfg.CredsFile, name,
				nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
					if err == nil {
						// Close or Drain: our own shutdown, not a fault.
						log.Debug("NATS connection closed")
						return
					}
					log.Warn("NATS disconnected", "err", redact.URLError(err, scfg.URL))
				}),
				// ConnectedUrlRedacted masks a password but keeps a token.
				nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", redact.URLs(c.ConnectedUrl())) }))
			if err != nil {
				log.Warn("NATS not reachable yet", "url", redact.URLs(scfg.URL), "err", err)
				return err
			}
		}
		// Ingest pipelines every event of a batch: 64 clients sending
		// batches of 100 have 6,400 publishes in flight, past nats.go's
		// default of 4,000, where a publish waits 200 ms for room and then
		// fails the request (a 503 and a retry). The extra room costs
		// nothing until it is used.
		js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(publishAsyncMaxPending))
		if err != nil {
			return err
		}
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := stream.Ensure(ectx, js, scfg); err != nil {
			log.Warn("JetStream streams not ready yet", "err", err)
			return err
		}
		return nil
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(wait)), ctx)
	if err := backoff.Retry(op, b); err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, js, nil
}

// publishAsyncMaxPending bounds the publishes awaiting their PubAck on one
// connection.
const publishAsyncMaxPending = 16384
