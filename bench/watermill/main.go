// Command watermill is the peer that 'patchbay bench' measures patchbay
// against: the same pipeline (HTTP webhook -> NATS JetStream -> contact PATCH)
// built the way an experienced Go engineer would build it with Watermill and
// watermill-nats, with its usual tuning. It lives in its own Go module so
// patchbay's go.mod does not carry Watermill.
//
//	watermill ingest -nats URL -addr 127.0.0.1:8080
//	watermill worker -nats URL -target http://127.0.0.1:8082 -subscribers 32 -ack async
//
// ingest answers 202 only after JetStream acknowledged the publish (watermill-nats
// publishes synchronously), with the event id as Nats-Msg-Id (TrackMsgId), so a
// retried webhook is stored once. worker is a Router with the Recoverer,
// PoisonQueue and Retry middleware: a PATCH that fails transiently is retried
// with exponential backoff, then the message goes to the poison topic; a
// permanent failure (4xx, bad payload) goes there at once. -ack chooses
// watermill-nats's ack mode: async (AckAsync, the ack is sent without
// waiting for JetStream's answer) or sync (AckSync, each subscriber waits
// for JetStream to confirm the ack before taking its next message), so the
// bench can run the peer at its own best setting.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: watermill ingest|worker [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	switch os.Args[1] {
	case "ingest":
		err = runIngest(ctx, os.Args[2:], log)
	case "worker":
		err = runWorker(ctx, os.Args[2:], log)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

// event is the part of a patchbay event the pipeline needs.
type event struct {
	ID        string          `json:"id"`
	Target    string          `json:"target"`
	ContactID json.RawMessage `json:"contact_id"`
	Patch     json.RawMessage `json:"patch"`
}

func (e *event) contact() string { return strings.Trim(string(e.ContactID), `"`) }

func (e *event) validate() error {
	switch {
	case e.ID == "":
		return errors.New("id: required")
	case e.Target != "skipcall" && e.Target != "revyops":
		return errors.New("target: skipcall or revyops")
	case e.contact() == "" || strings.ContainsAny(e.contact(), ".*> "):
		return errors.New("contact_id: required, one subject token")
	case len(e.Patch) == 0 || e.Patch[0] != '{':
		return errors.New("patch: an object")
	}
	return nil
}

// jetStreamConfig is the JetStream setup of every publisher and subscriber;
// ackAsync matters to subscribers only.
func jetStreamConfig(ackAsync bool) wmnats.JetStreamConfig {
	return wmnats.JetStreamConfig{
		AutoProvision: false, // the stream exists (patchbay's layout: contacts.patch.<target>.<contact>)
		TrackMsgId:    true,  // Nats-Msg-Id = message UUID = event id: JetStream drops retried webhooks
		AckAsync:      ackAsync,
		DurablePrefix: "wm-worker",
		SubscribeOptions: []nats.SubOpt{
			nats.DeliverAll(),
			nats.AckExplicit(),
		},
	}
}

func runIngest(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	url := fs.String("nats", nats.DefaultURL, "NATS URL")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL:         *url,
		NatsOptions: []nats.Option{nats.Name("watermill-ingest")},
		Marshaler:   &wmnats.NATSMarshaler{},
		JetStream:   jetStreamConfig(true),
	}, watermill.NewSlogLogger(log))
	if err != nil {
		return err
	}
	defer pub.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		var evs []event
		if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '[' {
			err = json.Unmarshal(body, &evs)
		} else {
			evs = make([]event, 1)
			err = json.Unmarshal(body, &evs[0])
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for i := range evs {
			if err := evs[i].validate(); err != nil {
				http.Error(w, fmt.Sprintf("event %d: %v", i, err), http.StatusUnprocessableEntity)
				return
			}
		}
		for i := range evs {
			payload := body
			if len(evs) > 1 {
				payload, _ = json.Marshal(evs[i])
			}
			msg := message.NewMessage(evs[i].ID, payload)
			if err := pub.Publish("contacts.patch."+evs[i].Target+"."+evs[i].contact(), msg); err != nil {
				w.Header().Set("Retry-After", "1")
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.WriteHeader(http.StatusAccepted)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// errPermanent marks failures a retry cannot fix.
var errPermanent = errors.New("permanent")

func runWorker(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	url := fs.String("nats", nats.DefaultURL, "NATS URL")
	target := fs.String("target", "", "provider base URL (both providers' paths)")
	subscribers := fs.Int("subscribers", 32, "concurrent subscriptions (messages in flight)")
	skKey := fs.String("skipcall-key", "sk_test_bench", "Skipcall API key")
	rvKey := fs.String("revyops-key", "unused", "RevyOps API key")
	ack := fs.String("ack", "async", "ack mode: async (watermill-nats AckAsync: send the ack, don't wait) or sync (AckSync: wait for JetStream to confirm it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ack != "async" && *ack != "sync" {
		return fmt.Errorf("worker: -ack %q: want async or sync", *ack)
	}
	wlog := watermill.NewSlogLogger(log)
	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:              *url,
		NatsOptions:      []nats.Option{nats.Name("watermill-worker")},
		QueueGroupPrefix: "wm-worker",
		SubscribersCount: *subscribers,
		AckWaitTimeout:   30 * time.Second,
		CloseTimeout:     10 * time.Second,
		Unmarshaler:      &wmnats.NATSMarshaler{},
		JetStream:        jetStreamConfig(*ack == "async"),
	}, wlog)
	if err != nil {
		return err
	}
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{URL: *url, Marshaler: &wmnats.NATSMarshaler{}, JetStream: jetStreamConfig(true)}, wlog)
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return err
	}
	poison, err := middleware.PoisonQueue(pub, "contacts.dlq.watermill")
	if err != nil {
		return err
	}
	router.AddMiddleware(
		middleware.Recoverer,
		poison,
		middleware.Retry{
			MaxRetries:      5,
			InitialInterval: 100 * time.Millisecond,
			MaxInterval:     5 * time.Second,
			Multiplier:      2,
			ShouldRetry:     func(p middleware.RetryParams) bool { return !errors.Is(p.Err, errPermanent) },
			Logger:          wlog,
		}.Middleware,
	)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *subscribers}}
	router.AddConsumerHandler("patch", "contacts.patch.>", sub, func(msg *message.Message) error {
		var ev event
		if err := json.Unmarshal(msg.Payload, &ev); err != nil {
			return fmt.Errorf("%w: decode: %v", errPermanent, err)
		}
		if err := ev.validate(); err != nil {
			return fmt.Errorf("%w: %v", errPermanent, err)
		}
		return patch(msg.Context(), client, *target, &ev, *skKey, *rvKey)
	})
	return router.Run(ctx)
}

// patch sends ev's PATCH to the provider at base.
func patch(ctx context.Context, client *http.Client, base string, ev *event, skKey, rvKey string) error {
	path := "/v1/contacts/"
	if ev.Target == "revyops" {
		path = "/public/v2/contacts/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, base+path+ev.contact(), bytes.NewReader(ev.Patch))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if ev.Target == "revyops" {
		req.Header.Set("X-API-Key", rvKey)
	} else {
		req.Header.Set("Authorization", "Bearer "+skKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return fmt.Errorf("provider answered %d", resp.StatusCode)
	default:
		return fmt.Errorf("%w: provider answered %d", errPermanent, resp.StatusCode)
	}
}
