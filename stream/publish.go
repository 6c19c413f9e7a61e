package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher stores messages in JetStream and waits for each one's
// acknowledgement (PubAck), like jetstream's PublishMsg and
// PublishMsgAsync, on the hot paths: ingest's events and the worker's
// clock commits.
//
// It exists because profiles of ingest under load showed nats.go's reply
// handling as its largest cost: for batches of 100, jetstream's
// handleAsyncReply was 20 % of the process's CPU, 14 % of it in
// encoding/json decoding the PubAck, plus one shared mutex, a timer and two
// channels per message. Here a whole request is one call, with one entry
// in a map, one channel closed when every answer is in, and PubAcks read
// by a parser for the three shapes nats-server sends (encoding/json for
// anything else, so an unexpected answer is still read right).
//
// A publish that meets no responders (a stream leader being elected) is
// sent again after a pause, as jetstream does. The wait for answers ends
// with ctx: the caller bounds it.
type Publisher struct {
	nc     *nats.Conn
	sub    *nats.Subscription
	prefix string // reply subjects are prefix + call + "." + index

	retryWait time.Duration
	retries   int

	mu    sync.Mutex
	next  uint64
	calls map[uint64]*call

	// stream is the stream name of the last PubAck read, which the next
	// PubAck shares instead of a string of its own (the answers of one
	// publisher name few streams). Only the subscription's goroutine uses
	// it.
	stream string
}

// call is one round of a Publish waiting for its answers. Only the
// subscription's goroutine writes answers and left while the call is
// registered; the caller reads them after done is closed.
type call struct {
	answers []answer
	left    int
	done    chan struct{}
	one     [1]answer // answers of a call of one message
}

// answer is JetStream's answer to one message of a call.
type answer struct {
	ack  jetstream.PubAck
	err  error
	seen bool // an answer came (a second one is ignored)
}

// errNoResponders marks a message nobody answered, to be sent again.
var errNoResponders = errors.New("stream: no responders")

// NewPublisher subscribes to the replies of the publishes it will make on
// nc. Close unsubscribes.
func NewPublisher(nc *nats.Conn) (*Publisher, error) {
	p := &Publisher{
		nc:        nc,
		prefix:    nc.NewInbox() + ".",
		retryWait: jetstream.DefaultPubRetryWait,
		retries:   jetstream.DefaultPubRetryAttempts,
		calls:     map[uint64]*call{},
	}
	sub, err := nc.Subscribe(p.prefix+"*.*", p.reply)
	if err != nil {
		return nil, fmt.Errorf("stream: subscribe to PubAcks: %w", err)
	}
	// An answer the callback has not read yet is a request still waiting:
	// no limit but memory, as jetstream's own reply subscription.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("stream: PubAck subscription: %w", err)
	}
	p.sub = sub
	return p, nil
}

// Close stops reading answers; a Publish still waiting ends with its
// context.
func (p *Publisher) Close() error {
	return p.sub.Unsubscribe()
}

// Publish stores msgs in JetStream and returns each one's PubAck, in the
// order of msgs. It fails if any message was not stored (the others may
// have been: callers make publishes idempotent with a message id). Nothing
// is sent if ctx is already done. It sets each message's Reply.
func (p *Publisher) Publish(ctx context.Context, msgs []*nats.Msg) ([]jetstream.PubAck, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	acks := make([]jetstream.PubAck, len(msgs))
	return acks, p.publish(ctx, natsMsgs(msgs), acks)
}

// PublishMsg is Publish for one message, m: it returns m's PubAck, without
// the slices a batch needs. It sets m's Reply.
func (p *Publisher) PublishMsg(ctx context.Context, m *nats.Msg) (jetstream.PubAck, error) {
	var acks [1]jetstream.PubAck
	err := p.publish(ctx, oneMsg{m}, acks[:])
	return acks[0], err
}

// Message is one message of PublishEncoded: its data is written as it is
// sent.
type Message struct {
	Subject string
	// ID, if not empty, is the message's Nats-Msg-Id: JetStream stores a
	// message once per id within the stream's duplicate window.
	ID string
	// Source, if not empty, is the message's SourceHeader: where the
	// event came from, for the worker's contact history.
	Source string
	// Traceparent, if not empty, is the message's W3C traceparent header
	// (package internal/tracing): the trace the message belongs to.
	Traceparent string
}

// SourceHeader names where an event came from: "api" for the events API,
// a webhook source's name for /v1/sources/{name}. Ingest sets it; the
// worker keeps it with the clocks of the fields the event set.
const SourceHeader = "Patchbay-Source"

// PublishEncoded is Publish for messages whose only headers are their id,
// their source (SourceHeader), their traceparent and the stream expected
// to store them (Nats-Expected-Stream, if stream is not empty): the
// headers jetstream.WithMsgID and WithExpectStream set.
// encode appends message i's data to buf and returns it, as each message is
// sent. It sends them all through one nats.Msg, one header map and one data
// buffer, set anew for each message (nats.go encodes and copies them as it
// sends), instead of a header map per message and the data of the whole
// batch at once: a batch of events held a hundred of each. A message sent
// again is encoded again. If encode fails, the messages before it may have
// been stored, as when a publish fails.
func (p *Publisher) PublishEncoded(ctx context.Context, stream string, msgs []Message, encode func(i int, buf []byte) ([]byte, error)) ([]jetstream.PubAck, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	b := &messages{msgs: msgs, id: []string{""}, src: []string{""}, hdr: nats.Header{}, encode: encode}
	if stream != "" {
		b.hdr[jetstream.ExpectedStreamHeader] = []string{stream}
	}
	b.m.Header = b.hdr
	acks := make([]jetstream.PubAck, len(msgs))
	return acks, p.publish(ctx, b, acks)
}

// headerTraceparent is the W3C trace context header (see
// internal/tracing.HeaderTraceparent).
const headerTraceparent = "traceparent"

// batch is the n messages of a Publish.
type batch interface {
	// subject returns message i's subject.
	subject(i int) string
	// send publishes message i on nc with reply subject reply.
	send(nc *nats.Conn, i int, reply string) error
}

// natsMsgs is Publish's batch: it sets each message's Reply.
type natsMsgs []*nats.Msg

func (b natsMsgs) subject(i int) string { return b[i].Subject }

func (b natsMsgs) send(nc *nats.Conn, i int, reply string) error {
	b[i].Reply = reply
	return nc.PublishMsg(b[i])
}

// oneMsg is PublishMsg's batch of one message: it sets its Reply. (A
// struct of one pointer is held by the batch interface without an
// allocation, unlike a slice.)
type oneMsg struct{ m *nats.Msg }

func (b oneMsg) subject(int) string { return b.m.Subject }

func (b oneMsg) send(nc *nats.Conn, _ int, reply string) error {
	b.m.Reply = reply
	return nc.PublishMsg(b.m)
}

// messages is PublishEncoded's batch: m, hdr and data are set for each
// message in turn; id is hdr's Nats-Msg-Id value while it has one, tp its
// traceparent's (allocated at the first message that has one).
type messages struct {
	msgs   []Message
	m      nats.Msg
	hdr    nats.Header
	id     []string
	src    []string
	tp     []string
	encode func(i int, buf []byte) ([]byte, error)
	data   []byte
}

func (b *messages) subject(i int) string { return b.msgs[i].Subject }

func (b *messages) send(nc *nats.Conn, i int, reply string) error {
	msg := &b.msgs[i]
	if msg.ID != "" {
		b.id[0] = msg.ID
		b.hdr[jetstream.MsgIDHeader] = b.id
	} else {
		delete(b.hdr, jetstream.MsgIDHeader)
	}
	if msg.Source != "" {
		b.src[0] = msg.Source
		b.hdr[SourceHeader] = b.src
	} else {
		delete(b.hdr, SourceHeader)
	}
	if msg.Traceparent != "" {
		if b.tp == nil {
			b.tp = []string{""}
		}
		b.tp[0] = msg.Traceparent
		b.hdr[headerTraceparent] = b.tp
	} else if b.tp != nil {
		delete(b.hdr, headerTraceparent)
	}
	var err error
	if b.data, err = b.encode(i, b.data[:0]); err != nil {
		return err
	}
	b.m.Subject, b.m.Reply, b.m.Data = msg.Subject, reply, b.data
	return nc.PublishMsg(&b.m)
}

// publish stores the len(acks) messages of msgs, as Publish describes,
// and sets acks[i] to message i's PubAck.
func (p *Publisher) publish(ctx context.Context, msgs batch, acks []jetstream.PubAck) error {
	n := len(acks)
	var one [1]int
	todo := one[:]
	if n > 1 {
		todo = make([]int, n)
	}
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; ; attempt++ {
		retry, err := p.round(ctx, msgs, todo, acks)
		if err != nil || len(retry) == 0 {
			return err
		}
		if attempt >= p.retries {
			return fmt.Errorf("%w (%d of %d messages, %d attempts)", jetstream.ErrNoStreamResponse, len(retry), n, attempt+1)
		}
		t := time.NewTimer(p.retryWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("stream: waiting to publish again: %w", ctx.Err())
		case <-t.C:
		}
		todo = retry
	}
}

// round publishes msgs[todo...] as one call and waits for every answer. It
// returns the indexes nobody answered, to publish again.
func (p *Publisher) round(ctx context.Context, msgs batch, todo []int, acks []jetstream.PubAck) ([]int, error) {
	// Nothing is sent once ctx is done: a caller whose right to write
	// ended (a lease's deadline) must not write.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("stream: publish %s: %w", msgs.subject(todo[0]), err)
	}
	c := &call{left: len(todo), done: make(chan struct{})}
	if len(todo) == 1 {
		c.answers = c.one[:]
	} else {
		c.answers = make([]answer, len(todo))
	}
	p.mu.Lock()
	p.next++
	id := p.next
	p.calls[id] = c
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.calls, id)
		p.mu.Unlock()
	}()
	// The reply subjects, prefix + call + "." + index, share one string,
	// built on the stack for a call of one message.
	base := len(p.prefix) + 14 // the call in base 36 and a dot
	var small [96]byte
	var oneEnd [1]int
	buf, ends := small[:0], oneEnd[:]
	if need := len(todo) * (base + 4); need > len(small) {
		buf = make([]byte, 0, need)
	}
	if len(todo) > 1 {
		ends = make([]int, len(todo))
	}
	for k := range todo {
		buf = append(buf, p.prefix...)
		buf = strconv.AppendUint(buf, id, 36)
		buf = append(buf, '.')
		buf = strconv.AppendInt(buf, int64(k), 10)
		ends[k] = len(buf)
	}
	replies := string(buf)
	for k, i := range todo {
		start := 0
		if k > 0 {
			start = ends[k-1]
		}
		if err := msgs.send(p.nc, i, replies[start:ends[k]]); err != nil {
			return nil, fmt.Errorf("stream: publish %s: %w", msgs.subject(i), err)
		}
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("stream: waiting for %d PubAcks: %w", len(todo), ctx.Err())
	}
	var retry []int
	var firstErr error
	for k, i := range todo {
		switch err := c.answers[k].err; {
		case err == nil:
			acks[i] = c.answers[k].ack
		case errors.Is(err, errNoResponders):
			retry = append(retry, i)
		case firstErr == nil:
			firstErr = fmt.Errorf("stream: publish %s: %w", msgs.subject(i), err)
		}
	}
	return retry, firstErr
}

// reply records one answer. It runs on the subscription's goroutine.
func (p *Publisher) reply(m *nats.Msg) {
	id, k, ok := parseReplyToken(m.Subject, len(p.prefix))
	if !ok {
		return
	}
	p.mu.Lock()
	c := p.calls[id]
	p.mu.Unlock()
	if c == nil || k >= len(c.answers) || c.answers[k].seen {
		return // the call ended (its context did), or an answer came twice
	}
	a := &c.answers[k]
	a.ack, a.err = readAnswerOf(m, p.stream)
	if a.err == nil && a.ack.Stream != p.stream && plain(a.ack.Stream) {
		p.stream = a.ack.Stream
	}
	a.seen = true
	c.left--
	if c.left == 0 {
		close(c.done)
	}
}

// parseReplyToken reads "<call base 36>.<index>" after prefix n bytes of s.
func parseReplyToken(s string, n int) (id uint64, k int, ok bool) {
	if len(s) <= n {
		return 0, 0, false
	}
	s = s[n:]
	dot := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 1 {
		return 0, 0, false
	}
	id, err := strconv.ParseUint(s[:dot], 36, 64)
	if err != nil {
		return 0, 0, false
	}
	k, err = strconv.Atoi(s[dot+1:])
	if err != nil || k < 0 {
		return 0, 0, false
	}
	return id, k, true
}

// readAnswer reads JetStream's answer to a publish.
func readAnswer(m *nats.Msg) (jetstream.PubAck, error) {
	return readAnswerOf(m, "")
}

// readAnswerOf is readAnswer where a PubAck of stream (when not empty)
// shares its name instead of allocating it.
func readAnswerOf(m *nats.Msg, stream string) (jetstream.PubAck, error) {
	if len(m.Data) == 0 {
		status := m.Header.Get("Status")
		if status == "503" {
			return jetstream.PubAck{}, errNoResponders
		}
		return jetstream.PubAck{}, fmt.Errorf("%w: status %q %s", jetstream.ErrInvalidJSAck, status, m.Header.Get("Description"))
	}
	if ack, ok := parsePubAckOf(m.Data, stream); ok {
		return ack, nil
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
		jetstream.PubAck
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return jetstream.PubAck{}, fmt.Errorf("%w: %v", jetstream.ErrInvalidJSAck, err)
	}
	if r.Error != nil {
		return jetstream.PubAck{}, r.Error
	}
	if r.Stream == "" {
		return jetstream.PubAck{}, jetstream.ErrInvalidJSAck
	}
	return r.PubAck, nil
}

// parsePubAck reads the PubAcks nats-server writes for a stored message
// (server/stream.go: `{"stream":"S","seq":N}`, with `"domain":"D"` before
// the sequence when the server has a domain, and `,"duplicate": true` for
// a repeated message id) without encoding/json. Anything else (an error,
// escapes, a field it does not know) is not ok, for encoding/json to read.
func parsePubAck(b []byte) (jetstream.PubAck, bool) {
	return parsePubAckOf(b, "")
}

// parsePubAckOf is parsePubAck where a PubAck of stream (when not empty)
// shares its name instead of allocating it.
func parsePubAckOf(b []byte, stream string) (jetstream.PubAck, bool) {
	var ack jetstream.PubAck
	rest, ok := cutPrefix(b, `{"stream":"`)
	if !ok {
		return ack, false
	}
	if r, ok := cutPrefix(rest, stream); ok && stream != "" && len(r) > 0 && r[0] == '"' {
		ack.Stream, rest = stream, r[1:]
	} else if ack.Stream, rest, ok = plainString(rest); !ok || ack.Stream == "" {
		return ack, false
	}
	if r, ok := cutPrefix(rest, `,"domain":"`); ok {
		if ack.Domain, rest, ok = plainString(r); !ok {
			return ack, false
		}
	}
	if rest, ok = cutPrefix(rest, `,"seq":`); !ok {
		return ack, false
	}
	if ack.Sequence, rest, ok = digits(rest); !ok {
		return ack, false
	}
	if r, ok := cutPrefix(rest, `,"duplicate": true`); ok {
		ack.Duplicate, rest = true, r
	} else if r, ok := cutPrefix(rest, `,"duplicate":true`); ok {
		ack.Duplicate, rest = true, r
	}
	return ack, len(rest) == 1 && rest[0] == '}'
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// plainString reads a JSON string's body up to its closing quote; a
// backslash, a control character or a byte outside ASCII (which JSON
// decoding may replace) is not plain.
func plainString(b []byte) (string, []byte, bool) {
	for i, c := range b {
		switch {
		case c == '"':
			return string(b[:i]), b[i+1:], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", b, false
		}
	}
	return "", b, false
}

// plain reports whether s is a JSON string's body as plainString reads
// it: JSON writes it as it is.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
			return false
		}
	}
	return true
}

// digits reads a JSON unsigned integer that fits in a uint64.
func digits(b []byte) (uint64, []byte, bool) {
	var n uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, b, false
		}
		n = n*10 + d
	}
	if i == 0 || i > 1 && b[0] == '0' {
		return 0, b, false
	}
	return n, b[i:], true
}
