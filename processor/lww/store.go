package lww

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/stream"
)

// Defaults of StoreConfig.
const (
	// DefaultBucket is the KV bucket name.
	DefaultBucket = "PATCHBAY_LWW"
	// DefaultTTL is 32 days: longer than the events stream's default max
	// age (stream.Config.EventsMaxAge, 7 days) and than the dead-letter
	// stream's (DLQMaxAge, 30 days), whose events can be replayed with their
	// original occurred_at.
	DefaultTTL = 32 * 24 * time.Hour
	// DefaultMaxAttempts bounds Commit's compare-and-set attempts.
	DefaultMaxAttempts = 32
)

// StoreConfig configures a Store. The zero value of each field takes its
// default.
type StoreConfig struct {
	// Bucket is the KV bucket name (default DefaultBucket).
	Bucket string
	// Replicas of the bucket, 1..5 (default 1; 3 in a cluster, like the
	// streams).
	Replicas int
	// TTL is how long a contact's entry is kept after its last Commit
	// (default DefaultTTL). It bounds the state's size: contacts not
	// changed for TTL cost nothing. The trade-off: an entry not written for
	// TTL is forgotten, so an event older than a forgotten field's clock
	// wins again if it arrives after that. Keep TTL longer than any event
	// can wait: the events stream's MaxAge (stream.Config.EventsMaxAge), and
	// the dead-letter stream's (DLQMaxAge) if dead letters are replayed.
	TTL time.Duration
	// MaxAttempts bounds Commit's compare-and-set attempts under contention
	// (default DefaultMaxAttempts).
	MaxAttempts int
	// Publisher, if set, makes Commit's first compare-and-set a publish to
	// the bucket's stream with its PubAck read by hand, instead of
	// jetstream's KeyValue call (whose encoding/json read of the PubAck
	// is a measurable share of a worker's CPU). Retries after a conflict
	// go through the KeyValue, which also knows how to create a key over
	// a delete marker.
	Publisher *stream.Publisher
}

func (c *StoreConfig) setDefaults() {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
}

func (c StoreConfig) validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("lww: replicas %d out of range 1..5", c.Replicas)
	case c.TTL < 0:
		return fmt.Errorf("lww: TTL %s is negative", c.TTL)
	case c.MaxAttempts < 1:
		return fmt.Errorf("lww: MaxAttempts %d must be positive", c.MaxAttempts)
	}
	return nil
}

// Store keeps each (target, contact)'s field clocks in a NATS KV bucket, one
// entry per contact under the key "<target>.<contact>". Use NewStore; a
// Store is safe for concurrent use.
type Store struct {
	kv          jetstream.KeyValue
	nc          *nats.Conn
	maxAttempts int
	pub         *stream.Publisher
	subjects    string  // "$KV.<bucket>.", the subject of a key less the key
	msgGet      string  // "$JS.API.STREAM.MSG.GET.KV_<bucket>", answered by the stream leader
	reader      *reader // batches the Gets of concurrent deliveries
	now         func() time.Time
	bufs        sync.Pool // *[]byte: the buffers Commit encodes a state into
}

// NewStore creates the KV bucket described by cfg, or updates it to cfg if
// it exists, and returns a Store on it. It fails on an invalid cfg, or
// wrapping the jetstream error when the bucket cannot be created or
// updated (for example more replicas than servers).
func NewStore(ctx context.Context, js jetstream.JetStream, cfg StoreConfig) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	kv, err := stream.CreateOrUpdateKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "patchbay: per-field clocks of the values last applied to each contact (last-writer-wins)",
		History:     1,
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lww: bucket %s: %w", cfg.Bucket, err)
	}
	s := &Store{
		kv: kv, nc: js.Conn(), maxAttempts: cfg.MaxAttempts, pub: cfg.Publisher, now: time.Now,
		subjects: "$KV." + cfg.Bucket + ".", msgGet: "$JS.API.STREAM.MSG.GET.KV_" + cfg.Bucket,
	}
	if s.nc == nil {
		return nil, fmt.Errorf("lww: bucket %s: the JetStream context has no connection", cfg.Bucket)
	}
	replicas, err := bucketReplicas(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("lww: bucket %s: %w", cfg.Bucket, err)
	}
	s.reader = &reader{nc: s.nc, stream: "KV_" + cfg.Bucket, prefix: s.subjects, msgGet: s.msgGet, single: s.get}
	if replicas > 1 {
		// Followers answer direct gets too: a batched read must prove it
		// is current (see reader), with a key that always has an entry.
		s.reader.sentinel = s.subjects + sentinelKey
		s.reader.putSentinel = s.putSentinel
		if err := s.putSentinel(ctx); err != nil {
			return nil, fmt.Errorf("lww: bucket %s: %w", cfg.Bucket, err)
		}
	}
	return s, nil
}

// sentinelKey is a key of the bucket that no (target, contact) forms (a
// target is a token without '_'), written when a Store on a replicated
// bucket starts: a batched read always names it, so the read's end carries
// the replica's last sequence even when none of the contacts has an entry.
const sentinelKey = "_patchbay_sentinel"

func (s *Store) putSentinel(ctx context.Context) error {
	// A bucket just created, or one whose leader is being elected, answers
	// no write for a moment ("no response from stream", no responders, a
	// request timeout): retried with backoff for up to 30 s or until ctx
	// ends, as a worker starting beside a fresh cluster needs.
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(50*time.Millisecond), backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(30*time.Second))
	err := backoff.Retry(func() error {
		_, err := s.kv.Put(ctx, sentinelKey, []byte{0})
		if err != nil && ctx.Err() == nil && (errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
			errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)) {
			return err
		}
		return backoff.Permanent(err)
	}, backoff.WithContext(b, ctx))
	if err != nil {
		return fmt.Errorf("write %s: %w", sentinelKey, err)
	}
	return nil
}

// bucketReplicas returns the replicas of kv's stream as the server has it.
func bucketReplicas(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("status: %w", err)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		return max(bs.StreamInfo().Config.Replicas, 1), nil
	}
	return 0, errors.New("status: no stream info")
}

// Key returns the KV key of (target, contact): "<target>.<contact>". It
// fails, wrapping ErrInvalid, unless both are non-empty and made of the
// characters a KV key token allows (letters, digits, '-', '_', '=', '/'),
// as canonical contact ids are.
func Key(target events.Target, contact string) (string, error) {
	if !stream.KeyToken(string(target)) || !stream.KeyToken(contact) {
		return "", fmt.Errorf("%w: target %q and contact %q cannot form a KV key", ErrInvalid, target, contact)
	}
	return string(target) + "." + contact, nil
}

// Get returns the stored state of (target, contact): its field clocks and
// the revision they were read at. A contact without an entry (never
// committed, or expired) has an empty State with Revision 0. Get fails
// wrapping ErrInvalid (bad key), ErrCorrupt (undecodable value), or the
// jetstream error.
func (s *Store) Get(ctx context.Context, target events.Target, contact string) (State, error) {
	key, err := Key(target, contact)
	if err != nil {
		return State{}, err
	}
	if s.reader != nil {
		return s.reader.get(ctx, key)
	}
	return s.get(ctx, key)
}

// get reads key's state from the stream leader (the JetStream API's
// message get, which only the leader answers), so it sees every write that
// ended before it was sent, on any number of replicas. It is the read of
// one key: Commit's re-read after a lost compare-and-set, and the reader's
// fallback.
func (s *Store) get(ctx context.Context, key string) (State, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchTimeout)
		defer cancel()
	}
	// A key is plain text (see Key): the request needs no encoder.
	m, err := s.nc.RequestWithContext(ctx, s.msgGet, []byte(`{"last_by_subj":"`+s.subjects+key+`"}`))
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	lm, err := parseMsgGet(m.Data)
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	if lm == nil {
		return State{}, nil
	}
	if len(lm.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(lm.Hdrs)
		if err != nil {
			return State{}, fmt.Errorf("lww: get %s: headers: %w", key, err)
		}
		switch h.Get("KV-Operation") {
		case "DEL", "PURGE":
			return State{}, nil
		}
		if h.Get("Nats-Marker-Reason") != "" {
			return State{}, nil
		}
	}
	st, err := decodeState(lm.Data)
	if err != nil {
		return State{}, fmt.Errorf("lww: get %s: %w", key, err)
	}
	st.Revision = lm.Seq
	return st, nil
}

// storedMsg is a message in the JetStream API's message get response.
type storedMsg struct {
	Seq  uint64 `json:"seq"`
	Hdrs []byte `json:"hdrs"`
	Data []byte `json:"data"`
}

// jsNoMessageFound is the API error code of a get that found no message.
const jsNoMessageFound = 10037

// parseMsgGet decodes a message get response: the message, or nil when
// there is none.
func parseMsgGet(b []byte) (*storedMsg, error) {
	var resp struct {
		Message *storedMsg `json:"message"`
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("message get response: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == jsNoMessageFound:
		return nil, nil
	case resp.Error != nil:
		return nil, fmt.Errorf("message get: %d %s (%d)", resp.Error.Code, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return nil, errors.New("message get: empty response")
	}
	return resp.Message, nil
}

// Overwritten is what Commit found when a newer clock than the one it
// applied was stored for a field (another replica committed it after the
// PATCH's state was read): the PATCH just overwrote that newer value at the
// provider with an older one.
type Overwritten struct {
	// Fields lists, sorted, the fields whose newer value the Store knows:
	// Commit marked them pending in the same write, so the next PATCH for
	// the contact (see Filter) sends their newer values again, whoever
	// sends it.
	Fields []string
	// Unknown lists, sorted, the fields whose newer value the Store does
	// not know (stored by a version that kept clocks only): they cannot be
	// sent again, the provider keeps the older value until the field's
	// next change.
	Unknown []string
}

// Commit records, after the provider applied a PATCH (2xx), the fields it
// applied: each field's stored clock becomes the newer of the stored and
// the applied one, and a field whose applied clock wins stores its value
// from patch (the PATCH body as Merge or Filter returned it, so valid JSON;
// a field that patch lacks, or a nil patch, stores no value). A field whose
// applied clock equals the stored one is no longer pending. st is the state
// the caller read (with Get) before the PATCH; the write is a
// compare-and-set on st.Revision (a create when it is 0). When another
// writer got in between, Commit re-reads, merges again and retries, up to
// StoreConfig.MaxAttempts attempts, then fails wrapping ErrConflict.
//
// A stored clock newer than the applied one means the PATCH overwrote a
// newer value at the provider: Commit keeps the newer clock, marks the
// field pending when its value is known, and reports it in Overwritten, so
// the caller sends it again (a field Filter let through never has one on
// the first attempt). Nothing is written when nothing changes. Commit also
// fails wrapping ErrInvalid, ErrCorrupt, ctx's error, or the jetstream
// error. st is not modified.
func (s *Store) Commit(ctx context.Context, target events.Target, contact string, st State, patch json.RawMessage, applied map[string]Clock) (Overwritten, error) {
	if err := keyTokens(target, contact); err != nil {
		return Overwritten{}, err
	}
	// The patch's values, split once into a buffer on the stack; Commit
	// looks each applied field's value up there instead of in a map.
	var (
		unitBuf [unitsBuf]unit
		vals    []unit
	)
	if patch != nil {
		var err error
		if vals, err = units(unitBuf[:0], target, patch, true); err != nil {
			return Overwritten{}, err
		}
	}
	return s.commit(ctx, target, contact, st, vals, applied)
}

// CommitSplit is Commit for the patch of sp (as MergeSplit or FilterSplit
// returned it), its values read from sp instead of a parse of the patch.
func (s *Store) CommitSplit(ctx context.Context, target events.Target, contact string, st State, sp Split, applied map[string]Clock) (Overwritten, error) {
	if err := keyTokens(target, contact); err != nil {
		return Overwritten{}, err
	}
	var (
		unitBuf [unitsBuf]unit
		vals    []unit
	)
	if sp.patch != nil {
		var err error
		if vals, err = sp.unitsAt(unitBuf[:0], target); err != nil {
			return Overwritten{}, err
		}
	}
	return s.commit(ctx, target, contact, st, vals, applied)
}

// keyTokens refuses, as Get does, a target or contact that is not a key
// token.
func keyTokens(target events.Target, contact string) error {
	if !stream.KeyToken(string(target)) || !stream.KeyToken(contact) {
		_, err := Key(target, contact) // the same refusal as Get's
		return err
	}
	return nil
}

// commit is Commit with the patch's units vals, target and contact
// checked.
func (s *Store) commit(ctx context.Context, target events.Target, contact string, st State, vals []unit, applied map[string]Clock) (Overwritten, error) {
	// The subject of the key's entry, the key a slice of it: one string.
	subject := s.subjects + string(target) + "." + contact
	key := subject[len(s.subjects):]
	var (
		fieldBuf [2 * unitsBuf]field
		orderBuf [2 * unitsBuf]int32
	)
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer func() {
		if cap(*bp) <= maxPooledEncoding {
			s.bufs.Put(bp)
		}
	}()
	now := s.now()
	cur := st
	for attempt := 1; ; attempt++ {
		fs, ow, changed := mergeFields(fieldBuf[:0], cur, applied, vals, now)
		if !changed {
			return ow, nil
		}
		// The write's client copies the value before it returns: the
		// buffer is reused by the next Commit.
		*bp = appendFields((*bp)[:0], fs, sortFields(orderBuf[:0], fs))
		err := s.write(ctx, subject, *bp, cur.Revision, attempt == 1)
		if err == nil {
			return ow, nil
		}
		if !casConflict(err) {
			return Overwritten{}, fmt.Errorf("lww: commit %s: %w", key, err)
		}
		if attempt >= s.maxAttempts {
			return Overwritten{}, fmt.Errorf("%w: %s: %d attempts: %v", ErrConflict, key, attempt, err)
		}
		if err := pause(ctx, attempt); err != nil {
			return Overwritten{}, fmt.Errorf("lww: commit %s: %w", key, err)
		}
		if cur, err = s.get(ctx, key); err != nil {
			return Overwritten{}, err
		}
	}
}

// maxPooledEncoding bounds the buffers Store.bufs keeps: a larger one is
// left to the collector.
const maxPooledEncoding = 64 << 10

// write stores value at the key whose entry's subject is subject if the
// key's revision is still rev (0: the key does not exist). first says it
// is Commit's first attempt, which may go through the Publisher.
func (s *Store) write(ctx context.Context, subject string, value []byte, rev uint64, first bool) error {
	key := subject[len(s.subjects):]
	var err error
	switch {
	case first && s.pub != nil:
		w := casWrites.Get().(*casWrite)
		w.seq[0] = strconv.FormatUint(rev, 10)
		w.m.Subject, w.m.Data = subject, value
		_, err = s.pub.PublishMsg(ctx, &w.m)
		w.m.Data, w.seq[0] = nil, ""
		casWrites.Put(w)
	case rev == 0:
		_, err = s.kv.Create(ctx, key, value)
	default:
		_, err = s.kv.Update(ctx, key, value, rev)
	}
	return err
}

// casWrite is the message of a compare-and-set write through the
// Publisher, and its header, reused from write to write: the Publisher
// encodes them as it sends and keeps neither once PublishMsg returns.
type casWrite struct {
	m   nats.Msg
	seq [1]string // the header's Nats-Expected-Last-Subject-Sequence
}

var casWrites = sync.Pool{New: func() any {
	w := &casWrite{}
	w.m.Header = nats.Header{jetstream.ExpectedLastSubjSeqHeader: w.seq[:]}
	return w
}}

// casConflict reports whether err is a lost compare-and-set: the key exists
// or has another revision. Replicated buckets report it with another code
// (10164) than single ones (10071), and Create over a delete marker returns
// the raw API error.
func casConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// field is one field of the state Commit writes: its name, clock, whether
// it is pending, and its value when known.
type field struct {
	name    string
	clock   Clock
	pending bool
	known   bool // val is the field's value
	val     json.RawMessage
}

// mergeFields appends to dst the fields of cur with the applied clocks
// merged in (see Commit), in no order, the values of the fields whose
// applied clock wins taken from vals (a patch's units; a field given twice
// takes its last); it returns what the applied clocks overwrote, and
// whether anything changed. cur is not modified, and no map is built: the
// fields are encoded as they are (appendFields), the same bytes as
// encodeState's of the merged State.
func mergeFields(dst []field, cur State, applied map[string]Clock, vals []unit, now time.Time) ([]field, Overwritten, bool) {
	out := dst[:0]
	for name, old := range cur.Fields {
		pending := cur.pending(name)
		if c, ok := applied[name]; ok {
			switch {
			case c.After(old):
				continue // the applied clock's field, below
			case c.Equal(old):
				pending = false // the stored value was just sent again
			default: // a newer value is stored: this PATCH overwrote it
				if _, known := cur.Values[name]; known {
					pending = true
				}
			}
		}
		v, known := cur.Values[name]
		out = append(out, field{name: name, clock: old, pending: pending, known: known, val: v})
	}
	var ow Overwritten
	changed := false
	byName := newValues(vals)
	for name, c := range applied {
		old, ok := cur.Fields[name]
		switch {
		case !ok || c.After(old):
			changed = true
			c.Applied = now
			f := field{name: name, clock: c}
			f.val, f.known = byName.get(name)
			out = append(out, f)
		case c.Equal(old):
			changed = changed || cur.pending(name)
		default:
			if _, known := cur.Values[name]; !known {
				ow.Unknown = append(ow.Unknown, name)
				continue
			}
			ow.Fields = append(ow.Fields, name)
			changed = changed || !cur.pending(name)
		}
	}
	slices.Sort(ow.Fields)
	slices.Sort(ow.Unknown)
	if !changed {
		return out[:0], ow, false
	}
	return out, ow, true
}

// values finds a patch's value by field name: a linear scan of the few
// units of a typical patch, an index built once past them, so that a large
// merged patch does not cost a scan per applied field.
type values struct {
	us []unit
	ix map[string]int // name → index of its last unit; nil: scan
}

// newValues indexes us when a scan per field would be costly.
func newValues(us []unit) values {
	v := values{us: us}
	if len(us) > unitsBuf {
		v.ix = make(map[string]int, len(us))
		for i, u := range us {
			v.ix[u.name] = i // a field given twice takes its last
		}
	}
	return v
}

// get returns the value of the last unit named name.
func (v values) get(name string) (json.RawMessage, bool) {
	if v.ix != nil {
		i, ok := v.ix[name]
		if !ok {
			return nil, false
		}
		return v.us[i].val, true
	}
	for i := len(v.us) - 1; i >= 0; i-- {
		if v.us[i].name == name {
			return v.us[i].val, true
		}
	}
	return nil, false
}

// pause waits a random time that grows with attempt (at most about 50ms),
// so that writers contending for one key spread out.
func pause(ctx context.Context, attempt int) error {
	limit := min(time.Duration(1<<min(attempt, 6))*time.Millisecond, 50*time.Millisecond)
	t := time.NewTimer(rand.N(limit) + time.Millisecond/4)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
