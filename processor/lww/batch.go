package lww

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
// Get that asked for it began, and is proven current, so it sees every
// write that ended before (what a delivery under a lease needs). A server
// that does not answer batched reads (no direct get on the bucket, an
// older server) is read key by key, from the stream leader.
//
// Why a proof: every replica of a replicated bucket that has caught up
// once answers direct gets (a queue group; the client's own server first),
// and a follower that lags, or restarted and rejoined the group at 90% of
// the log, answers without the newest writes. The API's message get
// ($JS.API.STREAM.MSG.GET), which only the leader answers, reads one key
// per request (no multi_last, no batch): a key-by-key leader read costs a
// JSON response per key and goes through every server's API queue. So a
// batched read on a replicated bucket is sent together with one message
// get of the stream's last message (last_by_subj ">", the leader's last
// sequence S, a constant-time lookup); the direct get's end-of-batch
// carries the answering replica's last sequence (Nats-UpTo-Sequence). A
// write that ended before the read began has a sequence at most S; a
// replica whose last sequence is at least S has applied it, so its answer
// is current. Both requests go out at once: one round trip, one extra API
// request per batch, not per key. An answer that is not proven (the
// replica lags) is asked again a few times, then each key is read from the
// leader. The batch always names the sentinel key, so its end carries the
// sequence even when no contact of the batch has an entry. A bucket with
// one replica is its own leader: no proof is asked.
type reader struct {
	nc     *nats.Conn
	stream string // KV_<bucket>
	prefix string // $KV.<bucket>.
	msgGet string // $JS.API.STREAM.MSG.GET.KV_<bucket>
	single func(ctx context.Context, key string) (State, error)
	// sentinel is the subject of the sentinel key on a replicated bucket,
	// "" when the bucket has one replica (no proof needed).
	sentinel    string
	putSentinel func(ctx context.Context) error
	fallbacks   atomic.Uint64 // batches read key by key for want of a proof
	sentinelPut atomic.Int64  // when the sentinel was last written again (unix ns)

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
	var found map[string]*nats.Msg
	var err error
	for attempt := 1; ; attempt++ {
		found, err = r.multi(ctx, batch)
		if !errors.Is(err, errUnproven) && !errors.Is(err, errNoSentinel) || attempt >= proofAttempts || pause(ctx, attempt) != nil {
			break
		}
	}
	switch {
	case errors.Is(err, errNoBatch):
		r.mu.Lock()
		r.disabled = true
		r.mu.Unlock()
	case errors.Is(err, errNoSentinel):
		// The sentinel expired, or the answer came from a responder
		// that lacks it (a filtered mirror): written again, at most
		// once a minute; the keys are read from the leader meanwhile.
		r.fallbacks.Add(1)
		if now := time.Now().UnixNano(); now-r.sentinelPut.Load() > int64(time.Minute) {
			r.sentinelPut.Store(now)
			_ = r.putSentinel(ctx) // failing, the leader reads below still answer
		}
	case errors.Is(err, errUnproven):
		r.fallbacks.Add(1)
	}
	if err != nil {
		// The batch failed or is not proven current: each key is read on
		// its own from the leader, so one caller's answer never depends on
		// another's key.
		var wg sync.WaitGroup
		for _, c := range batch {
			wg.Go(func() { c.st, c.err = r.single(ctx, c.key) })
		}
		wg.Wait()
		return
	}
	for _, c := range batch {
		if m, ok := found[r.prefix+c.key]; ok { // no entry: the zero State
			c.st, c.err = stateOf(c.key, m)
		}
	}
}

// proofAttempts bounds the batched reads of one batch that are not proven
// current before its keys are read from the leader one by one.
const proofAttempts = 3

// Errors of multi.
var (
	// errNoBatch says the server does not answer batched direct gets.
	errNoBatch = errors.New("lww: batched reads not available")
	// errUnproven says the replica that answered had not applied the
	// leader's last write.
	errUnproven = errors.New("lww: batched read not proven current")
	// errNoSentinel says the sentinel key had no entry (it expired), so
	// the answer carried no sequence.
	errNoSentinel = errors.New("lww: batched read without the sentinel")
)

// multi requests the last message of every key of batch and returns them by
// subject. On a replicated bucket it also asks the leader for its last
// sequence and fails, wrapping errUnproven, unless the answering replica
// had applied it.
func (r *reader) multi(ctx context.Context, batch []*call) (map[string]*nats.Msg, error) {
	subjects := make([]string, 0, len(batch)+1)
	seen := make(map[string]bool, len(batch)+1)
	if r.sentinel != "" {
		subjects = append(subjects, r.sentinel)
		seen[r.sentinel] = true
	}
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
	replies, token, err := r.open(len(subjects) + 1)
	if err != nil {
		return nil, err
	}
	defer r.close(token)
	if err := r.nc.PublishRequest("$JS.API.DIRECT.GET."+r.stream, r.inbox+"."+token, req); err != nil {
		return nil, err
	}
	proof := r.sentinel != ""
	if proof {
		if err := r.nc.PublishRequest(r.msgGet, r.inbox+"."+token, lastMsgRequest); err != nil {
			return nil, err
		}
	}
	found := make(map[string]*nats.Msg, len(subjects))
	var (
		ended, sawSentinel bool
		upTo               uint64 // the answering replica's last sequence
		leader             uint64 // the leader's last sequence
		leaderKnown        = !proof
	)
	for !ended || !leaderKnown {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case m := <-replies:
			status := m.Header.Get("Status")
			subject := m.Header.Get("Nats-Subject")
			switch {
			case status == "" && subject == "": // the leader's message get
				lm, err := parseMsgGet(m.Data)
				if err != nil {
					return nil, fmt.Errorf("lww: batched read: leader's last sequence: %w", err)
				}
				if lm != nil {
					leader = lm.Seq
				}
				leaderKnown = true
			case status == "":
				if subject == r.sentinel {
					sawSentinel = true
					continue
				}
				found[subject] = m
			case status == "204": // end of batch
				if np := m.Header.Get("Nats-Num-Pending"); np != "" && np != "0" {
					return nil, fmt.Errorf("lww: batched read cut short, %s left", np)
				}
				upTo, _ = strconv.ParseUint(m.Header.Get("Nats-UpTo-Sequence"), 10, 64)
				ended = true
			case status == "404": // none of the keys has an entry
				ended = true
			case status == "503": // no responders: no direct get
				return nil, errNoBatch
			default:
				return nil, fmt.Errorf("lww: batched read: status %s %s", status, m.Header.Get("Description"))
			}
		}
	}
	switch {
	case !proof:
		return found, nil
	case !sawSentinel:
		return nil, errNoSentinel
	case upTo < leader:
		return nil, fmt.Errorf("%w: replica at sequence %d, leader at %d", errUnproven, upTo, leader)
	}
	return found, nil
}

// lastMsgRequest asks the API's message get for the stream's last message
// (whose sequence is the stream's last).
var lastMsgRequest = []byte(`{"last_by_subj":">"}`)

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
// of n replies less the end: its channel holds every reply the batch can
// have (one per key, the leader's, and the end), without the room of a
// full batch every time.
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
	st, err := decodeState(m.Data)
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	st.Revision = rev
	return st, nil
}
