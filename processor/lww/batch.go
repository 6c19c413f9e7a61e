package lww

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// maxBatch bounds the keys read by one request (the server answers at most
// 1024 messages to one).
const maxBatch = 256

// batchTimeout bounds one batched read; each caller also waits no longer
// than its own context.
const batchTimeout = 5 * time.Second

// reader batches the Gets of concurrent deliveries into one JetStream
// direct-get request for the last message of many subjects (multi_last,
// nats-server 2.11+): while one request is in flight, the Gets that arrive
// wait for the next one, which carries them all. A read is sent after the
// Get that asked for it began, so it sees every write that ended before
// (what a delivery under a lease needs). A server that does not answer
// batched reads (no direct get on the bucket, an older server) is read
// key by key.
type reader struct {
	nc     *nats.Conn
	stream string // KV_<bucket>
	prefix string // $KV.<bucket>.
	single func(ctx context.Context, key string) (State, error)

	mu       sync.Mutex
	pending  []*call
	inflight bool
	sub      *nats.Subscription
	inbox    string                    // replies arrive on <inbox>.<batch>
	batches  map[string]chan *nats.Msg // open batches by token
	seq      uint64                    // last batch token
	disabled bool                      // batched reads refused: read key by key
}

type call struct {
	key  string
	done chan struct{}
	st   State
	err  error
}

// get returns key's state, read in the next batch.
func (r *reader) get(ctx context.Context, key string) (State, error) {
	r.mu.Lock()
	if r.disabled {
		r.mu.Unlock()
		return r.single(ctx, key)
	}
	c := &call{key: key, done: make(chan struct{})}
	r.pending = append(r.pending, c)
	lead := !r.inflight
	r.inflight = true
	r.mu.Unlock()
	if lead {
		go r.lead()
	}
	select {
	case <-c.done:
		return c.st, c.err
	case <-ctx.Done():
		return State{}, fmt.Errorf("lww: get %s: %w", key, ctx.Err())
	}
}

// lead reads the pending keys in one request, then hands the next batch
// to a new goroutine, or ends when nothing is pending.
func (r *reader) lead() {
	r.mu.Lock()
	n := min(len(r.pending), maxBatch)
	batch := r.pending[:n:n]
	r.pending = r.pending[n:]
	r.mu.Unlock()

	r.read(batch)

	r.mu.Lock()
	if len(r.pending) > 0 {
		go r.lead()
	} else {
		r.inflight = false
	}
	r.mu.Unlock()
}

// read fills in every call of batch and closes its done.
func (r *reader) read(batch []*call) {
	defer func() {
		for _, c := range batch {
			close(c.done)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	found, err := r.multi(ctx, batch)
	if errors.Is(err, errNoBatch) {
		r.mu.Lock()
		r.disabled = true
		r.mu.Unlock()
	}
	for _, c := range batch {
		switch {
		case err != nil:
			// The batch failed: each key is read on its own, so one
			// caller's answer never depends on another's key.
			c.st, c.err = r.single(ctx, c.key)
		default:
			m, ok := found[r.prefix+c.key]
			if !ok {
				continue // no entry: the zero State
			}
			c.st, c.err = stateOf(c.key, m)
		}
	}
}

// errNoBatch says the server does not answer batched direct gets.
var errNoBatch = errors.New("lww: batched reads not available")

// multi requests the last message of every key of batch and returns them by
// subject.
func (r *reader) multi(ctx context.Context, batch []*call) (map[string]*nats.Msg, error) {
	subjects := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, c := range batch {
		s := r.prefix + c.key
		if !seen[s] {
			seen[s] = true
			subjects = append(subjects, s)
		}
	}
	req, err := multiLastRequest(subjects)
	if err != nil {
		return nil, err
	}
	replies, token, err := r.open(len(subjects))
	if err != nil {
		return nil, err
	}
	defer r.close(token)
	if err := r.nc.PublishRequest("$JS.API.DIRECT.GET."+r.stream, r.inbox+"."+token, req); err != nil {
		return nil, err
	}
	found := make(map[string]*nats.Msg, len(subjects))
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case m := <-replies:
			status := m.Header.Get("Status")
			switch {
			case status == "":
				found[m.Header.Get("Nats-Subject")] = m
			case status == "204": // end of batch
				if np := m.Header.Get("Nats-Num-Pending"); np != "" && np != "0" {
					return nil, fmt.Errorf("lww: batched read cut short, %s left", np)
				}
				return found, nil
			case status == "404": // none of the keys has an entry
				return found, nil
			case status == "503": // no responders: no direct get
				return nil, errNoBatch
			default:
				return nil, fmt.Errorf("lww: batched read: status %s %s", status, m.Header.Get("Description"))
			}
		}
	}
}

// multiLastRequest returns the batched direct-get request for subjects,
// the bytes json.Marshal writes for it, without reflection when every
// subject is plain text that JSON writes as it is (a KV key always is).
func multiLastRequest(subjects []string) ([]byte, error) {
	n := len(`{"multi_last":[]}`)
	for _, s := range subjects {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				n = -1 // escaped by json.Marshal
				break
			}
		}
		if n < 0 {
			break
		}
		n += len(s) + 3
	}
	if n < 0 || subjects == nil {
		return json.Marshal(struct {
			MultiLast []string `json:"multi_last"`
		}{subjects})
	}
	b := make([]byte, 0, n)
	b = append(b, `{"multi_last":[`...)
	for i, s := range subjects {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, s...)
		b = append(b, '"')
	}
	return append(b, "]}"...), nil
}

// open subscribes the reply inbox on first use and registers a new batch
// of n keys: its channel holds every reply the batch can have (one per
// key, and the end), without the room of a full batch every time.
func (r *reader) open(n int) (<-chan *nats.Msg, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub == nil {
		r.inbox = r.nc.NewRespInbox()
		r.batches = map[string]chan *nats.Msg{}
		sub, err := r.nc.Subscribe(r.inbox+".*", r.route)
		if err != nil {
			return nil, "", fmt.Errorf("lww: batched read inbox: %w", err)
		}
		r.sub = sub
	}
	r.seq++
	token := strconv.FormatUint(r.seq, 10)
	ch := make(chan *nats.Msg, n+2)
	r.batches[token] = ch
	return ch, token, nil
}

func (r *reader) close(token string) {
	r.mu.Lock()
	delete(r.batches, token)
	r.mu.Unlock()
}

// route hands a reply to its batch; replies of a batch that gave up are
// dropped.
func (r *reader) route(m *nats.Msg) {
	token := m.Subject[len(r.inbox)+1:]
	r.mu.Lock()
	ch := r.batches[token]
	r.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- m:
	default: // more replies than keys asked: not ours to wait for
	}
}

// stateOf decodes the stored message m of key: a delete or purge marker, or
// a marker of an expired entry, is no entry.
func stateOf(key string, m *nats.Msg) (State, error) {
	switch m.Header.Get("KV-Operation") {
	case "DEL", "PURGE":
		return State{}, nil
	}
	if m.Header.Get("Nats-Marker-Reason") != "" {
		return State{}, nil
	}
	rev, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: sequence %q: %w", key, m.Header.Get("Nats-Sequence"), err)
	}
	fields, err := decodeFields(m.Data)
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	return State{Fields: fields, Revision: rev}, nil
}
