package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The keys of a budget's records in the bucket: <budget id>.<record>.
const (
	keyWindow = "window"
	keyPause  = "pause"
)

// shared is this replica's copy of the budget's shared records, with their
// KV revisions.
type shared struct {
	window    window
	windowRev uint64
	pause     pause
	pauseRev  uint64 // the pause epoch: a grant carries the revision it saw
}

func (b *Budget) key(record string) string { return b.id + "." + record }

// startWatch loads the records and keeps them current with a KV watch; it
// returns once the initial values are in.
func (b *Budget) startWatch(ctx context.Context) error {
	wctx, stop := context.WithCancel(context.Background())
	w, err := b.st.kv.Watch(wctx, b.id+".*")
	if err != nil {
		stop()
		return fmt.Errorf("ratelimit: watch: %w", err)
	}
	b.stop, b.watch = stop, w
	for {
		select {
		case <-ctx.Done():
			stop()
			_ = w.Stop()
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				stop()
				return errors.New("ratelimit: watch closed before the initial state")
			}
			if e == nil { // initial values done
				go b.follow(wctx)
				return nil
			}
			b.applyEntry(e)
		}
	}
}

// follow applies watch updates until ctx ends. When the watch closes (its
// consumer lost in a NATS outage), it watches again, every second until it
// succeeds: the initial values it then receives bring the records up to
// date, and older revisions are ignored.
func (b *Budget) follow(ctx context.Context) {
	defer close(b.done)
	w := b.watch
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				b.log.Warn("rate-limit watch closed; watching again")
				nw, err := b.rewatch(ctx)
				if err != nil {
					return // ctx ended
				}
				w = nw
				continue
			}
			if e != nil {
				b.applyEntry(e)
			}
		}
	}
}

// rewatch opens the records' watch again, retrying every second until it
// succeeds or ctx ends.
func (b *Budget) rewatch(ctx context.Context) (jetstream.KeyWatcher, error) {
	for {
		w, err := b.st.kv.Watch(ctx, b.id+".*")
		if err == nil {
			return w, nil
		}
		b.log.Warn("rate-limit watch unavailable; pauses from other replicas are not seen until it is back", "err", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (b *Budget) applyEntry(e jetstream.KeyValueEntry) {
	var data []byte
	if e.Operation() == jetstream.KeyValuePut {
		data = e.Value()
	}
	switch e.Key() {
	case b.key(keyWindow):
		b.apply(keyWindow, e.Revision(), data)
	case b.key(keyPause):
		b.apply(keyPause, e.Revision(), data)
	}
}

// apply installs a record at revision rev unless a newer one is installed;
// nil data is a deleted record.
func (b *Budget) apply(record string, rev uint64, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch record {
	case keyWindow:
		if rev <= b.state.windowRev {
			return
		}
		var w window
		if data != nil && json.Unmarshal(data, &w) != nil {
			b.log.Error("unreadable rate-limit window record; ignored", "revision", rev)
			return
		}
		b.state.window, b.state.windowRev = w, rev
	case keyPause:
		if rev <= b.state.pauseRev {
			return
		}
		var p pause
		if data != nil && json.Unmarshal(data, &p) != nil {
			b.log.Error("unreadable pause record; ignored", "revision", rev)
			return
		}
		switch old := b.state.pause.Kind; {
		case p.Kind == kindManual && old != kindManual:
			b.log.Warn("target paused by hand for every replica; its events wait in NATS until it is resumed", "by", p.By, "reason", p.Reason)
		case old == kindManual && p.Kind != kindManual:
			b.log.Info("target resumed by hand")
		case p.Kind != old:
			b.log.Debug("pause changed", "kind", p.Kind, "reason", p.Reason, "until", time.UnixMilli(p.Until))
		}
		b.state.pause, b.state.pauseRev = p, rev
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// refresh reads a record from the bucket (after a lost compare-and-set).
func (b *Budget) refresh(ctx context.Context, record string) error {
	e, err := b.st.kv.Get(ctx, b.key(record))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// The record is gone (its bucket deleted and created again): the
		// next compare-and-set creates it.
		b.mu.Lock()
		if record == keyWindow {
			b.state.windowRev = 0
		} else {
			b.state.pauseRev = 0
		}
		b.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("ratelimit: read %s: %w", record, err)
	}
	b.applyEntry(e)
	return nil
}
