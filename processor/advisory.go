package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/stream"
)

// watchMaxDeliveries dead-letters any message of the events stream for which
// JetStream gives up on its own (MAX_DELIVERIES, from any of its consumers).
// patchbay creates its consumers with unlimited deliveries, so this only
// fires if an operator set MaxDeliver; even then no event is dropped
// silently.
func (w *Worker) watchMaxDeliveries(ctx context.Context) (*nats.Subscription, error) {
	subj := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.*", w.scfg.EventsStream)
	sub, err := w.nc.QueueSubscribe(subj, "patchbay-max-deliveries", func(m *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries int    `json:"deliveries"`
		}
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			w.log.Error("unreadable MAX_DELIVERIES advisory", "err", err)
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := w.deadLetterBySeq(actx, adv.StreamSeq, adv.Deliveries); err != nil {
			w.log.Error("could not dead-letter a message JetStream stopped delivering; it stays in the stream", "seq", adv.StreamSeq, "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("processor: subscribe %s: %w", subj, err)
	}
	return sub, nil
}

func (w *Worker) deadLetterBySeq(ctx context.Context, seq uint64, deliveries int) error {
	str, err := w.js.Stream(ctx, w.scfg.EventsStream)
	if err != nil {
		return err
	}
	raw, err := str.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // already handled
	}
	if err != nil {
		return err
	}
	target := targetOf(w.scfg.SubjectPrefix, raw.Subject)
	l := dlq.Letter{
		Reason: dlq.ReasonMaxDeliveries, Detail: fmt.Sprintf("JetStream stopped after %d deliveries (consumer MaxDeliver)", deliveries),
		Attempts: deliveries, LastAttempt: w.now(), Stream: w.scfg.EventsStream, StreamSeq: seq, Subject: stream.CanonicalSubject(w.scfg.SubjectPrefix, raw.Subject),
		EventID: raw.Header.Get(jetstream.MsgIDHeader), Target: target, Data: raw.Data,
	}
	if err := w.dlq.Publish(ctx, l); err != nil {
		return err
	}
	// Another replica may have handled the same advisory and deleted the
	// message since GetMsg. The server answers that delete with a generic
	// failure (ErrMsgDeleteUnsuccessful, "no message found"), never
	// ErrMsgNotFound, so a failed delete asks again whether the message is
	// gone: then it is dead-lettered, by this letter or the other replica's
	// (deduplicated by stream sequence).
	if err := str.DeleteMsg(ctx, seq); err != nil {
		if _, gerr := str.GetMsg(ctx, seq); !errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return err
		}
	}
	w.m.deadLetters.WithLabelValues(target, string(l.Reason)).Inc()
	return nil
}

// targetOf returns the target token of <prefix>.patch.<target>.<id>, or "unknown".
func targetOf(prefix, subject string) string {
	rest, ok := strings.CutPrefix(subject, prefix+".patch.")
	if !ok {
		return "unknown"
	}
	t, _, _ := strings.Cut(rest, ".")
	switch t {
	case "revyops", "skipcall":
		return t
	}
	return "unknown"
}
