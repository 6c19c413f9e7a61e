package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// Validate reports a filter value that cannot match anything meaningful: a
// target or contact id that is not one subject token, a negative status, or
// Until not after Since. The error wraps ErrBadRequest.
func (f Filter) Validate() error {
	switch {
	case f.Target != "" && !stream.KeyToken(f.Target):
		return fmt.Errorf("%w: target %q is not a subject token", ErrBadRequest, f.Target)
	case f.ContactID != "" && !stream.KeyToken(f.ContactID):
		return fmt.Errorf("%w: contact id %q is not a subject token", ErrBadRequest, f.ContactID)
	case f.Reason != "" && !knownReason(f.Reason):
		return fmt.Errorf("%w: reason %q is not one of invalid, rejected, retries_exhausted, max_deliveries, unmapped", ErrBadRequest, f.Reason)
	case f.Status < 0 || f.Status > 999:
		return fmt.Errorf("%w: status %d is not an HTTP status", ErrBadRequest, f.Status)
	case !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since):
		return fmt.Errorf("%w: until %s is not after since %s", ErrBadRequest, f.Until, f.Since)
	}
	return nil
}

// IsZero reports whether f matches every letter.
func (f Filter) IsZero() bool {
	return f.Target == "" && f.ContactID == "" && f.Reason == "" && f.Status == 0 &&
		f.ErrorCode == "" && f.Since.IsZero() && f.Until.IsZero()
}

// Match reports whether l passes every set field of f.
func (f Filter) Match(l Letter) bool {
	switch {
	case f.Target != "" && l.Target != f.Target:
		return false
	case f.ContactID != "" && l.ContactID() != f.ContactID:
		return false
	case f.Reason != "" && l.Reason != f.Reason:
		return false
	case f.Status != 0 && l.Status != f.Status:
		return false
	case f.ErrorCode != "" && l.ErrorCode != f.ErrorCode:
		return false
	case !f.Since.IsZero() && l.DeadAt.Before(f.Since):
		return false
	case !f.Until.IsZero() && !l.DeadAt.Before(f.Until):
		return false
	}
	return true
}

// subject narrows f to a subject pattern of the DLQ stream, so that the
// server skips other targets' and contacts' letters.
func (f Filter) subject(prefix string) string {
	if f.Target == "" && f.ContactID == "" {
		return prefix + ".dlq.>"
	}
	t, c := f.Target, f.ContactID
	if t == "" {
		t = "*"
	}
	if c == "" {
		c = "*"
	}
	return prefix + ".dlq." + t + "." + c
}

// ContactID is the contact id at the target, from the original subject
// (<prefix>.patch.<target>.<contact>); "" when the subject has none.
func (l Letter) ContactID() string {
	parts := strings.Split(l.Subject, ".")
	if len(parts) < 4 || parts[len(parts)-3] != "patch" {
		return ""
	}
	if l.Reason == ReasonUnmapped {
		return ""
	}
	return parts[len(parts)-1]
}

// bounds returns the DLQ stream's first and last sequence; ok is false
// when it holds no letter.
func (s *Store) bounds(ctx context.Context) (str jetstream.Stream, first, last uint64, ok bool, err error) {
	str, err = s.js.Stream(ctx, s.stream)
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("dlq: stream %s: %w", s.stream, err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("dlq: stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return str, 0, 0, false, nil
	}
	return str, info.State.FirstSeq, info.State.LastSeq, true, nil
}

// scan calls fn, in stream order, for each letter f matches among the DLQ
// sequences [from, to). headersOnly leaves the payloads out. fn returns
// false to stop.
func (s *Store) scan(ctx context.Context, str jetstream.Stream, f Filter, from, to uint64, headersOnly bool, fn func(Letter) bool) error {
	if from >= to {
		return nil
	}
	cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.subject(s.prefix)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
		HeadersOnly:    headersOnly,
	})
	if err != nil {
		return fmt.Errorf("dlq: ordered consumer: %w", err)
	}
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("dlq: fetch: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("dlq: metadata: %w", err)
			}
			if md.Sequence.Stream >= to {
				return nil
			}
			l := FromMsg(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
			if f.Match(l) && !fn(l) {
				return nil
			}
			if md.NumPending == 0 {
				return batch.Error()
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("dlq: fetch: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

// List returns one page of the letters f matches, newest first: those
// below page.Before (all when 0), at most page.Limit. It reads the stream
// backwards in growing windows of sequences, so a page near the newest end
// costs about its own size. Next in the result is exact: 0 means no older
// letter matches. List fails with ErrBadRequest for an invalid filter, or
// the jetstream error.
func (s *Store) List(ctx context.Context, f Filter, page Page) (ListResult, error) {
	if err := f.Validate(); err != nil {
		return ListResult{}, err
	}
	limit := page.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	str, first, last, ok, err := s.bounds(ctx)
	if err != nil || !ok {
		return ListResult{Letters: []Letter{}}, err
	}
	end := last + 1
	if page.Before != 0 && page.Before < end {
		end = page.Before
	}
	out := make([]Letter, 0, limit+1)
	window := uint64(max(2*limit, 256))
	for end > first && len(out) <= limit {
		start := first
		if end-first > window {
			start = end - window
		}
		var got []Letter
		err := s.scan(ctx, str, f, start, end, false, func(l Letter) bool { got = append(got, l); return true })
		if err != nil {
			return ListResult{}, err
		}
		slices.Reverse(got)
		out = append(out, got...)
		end, window = start, min(window*2, 1<<16)
	}
	res := ListResult{Letters: out}
	if len(out) > limit {
		res.Letters, res.Next = out[:limit], out[limit-1].DLQSeq
	}
	return res, nil
}

// Summary counts the letters f matches per reason and target, reading
// their headers only. It fails with ErrBadRequest for an invalid filter, or
// the jetstream error.
func (s *Store) Summary(ctx context.Context, f Filter) (Summary, error) {
	if err := f.Validate(); err != nil {
		return Summary{}, err
	}
	sum := Summary{Counts: []Count{}, ByReason: map[Reason]int{}, ByTarget: map[string]int{}}
	str, _, last, ok, err := s.bounds(ctx)
	if err != nil || !ok {
		return sum, err
	}
	type key struct {
		r Reason
		t string
	}
	counts := map[key]int{}
	err = s.scan(ctx, str, f, 1, last+1, true, func(l Letter) bool {
		counts[key{l.Reason, l.Target}]++
		if sum.Total == 0 || l.DeadAt.Before(sum.Oldest) {
			sum.Oldest = l.DeadAt
		}
		if l.DeadAt.After(sum.Newest) {
			sum.Newest = l.DeadAt
		}
		sum.Total++
		return true
	})
	if err != nil {
		return Summary{}, err
	}
	for k, n := range counts {
		sum.Counts = append(sum.Counts, Count{Reason: k.r, Target: k.t, Count: n})
		sum.ByReason[k.r] += n
		sum.ByTarget[k.t] += n
	}
	slices.SortFunc(sum.Counts, func(a, b Count) int {
		if c := strings.Compare(string(a.Reason), string(b.Reason)); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
	return sum, nil
}

// selected returns the DLQ sequences sel names, oldest first: its Seqs as
// given (sorted, each once), or those its Filter matches now. Letters
// dead-lettered after the call are not included.
func (s *Store) selected(ctx context.Context, sel Selection) ([]uint64, error) {
	if len(sel.Seqs) > 0 {
		seqs := slices.Clone(sel.Seqs)
		slices.Sort(seqs)
		return slices.Compact(seqs), nil
	}
	if sel.Filter.IsZero() && !sel.All {
		return nil, ErrEmptySelection
	}
	if err := sel.Filter.Validate(); err != nil {
		return nil, err
	}
	str, _, last, ok, err := s.bounds(ctx)
	if err != nil || !ok {
		return nil, err
	}
	var seqs []uint64
	err = s.scan(ctx, str, sel.Filter, 1, last+1, true, func(l Letter) bool {
		seqs = append(seqs, l.DLQSeq)
		return true
	})
	return seqs, err
}

// Purge deletes the letters sel names (a letter already gone is skipped)
// and reports which it deleted; with opts.DryRun it deletes nothing.
// "Older than a duration" is a Filter with Until set to now minus it.
// Purge fails with ErrEmptySelection, ErrBadRequest, ctx's error or the
// jetstream error; the report then holds what was deleted before.
func (s *Store) Purge(ctx context.Context, sel Selection, opts PurgeOptions) (PurgeReport, error) {
	rep := PurgeReport{Seqs: []uint64{}, DryRun: opts.DryRun}
	seqs, err := s.selected(ctx, sel)
	if err != nil {
		return rep, err
	}
	str, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return rep, fmt.Errorf("dlq: stream %s: %w", s.stream, err)
	}
	for _, seq := range seqs {
		if opts.DryRun {
			if _, err := s.Show(ctx, seq); errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return rep, err
			}
		} else if deleted, err := deleteLetter(ctx, str, seq); err != nil {
			return rep, err
		} else if !deleted {
			continue
		}
		rep.Seqs = append(rep.Seqs, seq)
		rep.Purged++
	}
	return rep, nil
}

// knownReason reports whether r is one of the Reason constants.
func knownReason(r Reason) bool {
	switch r {
	case ReasonInvalid, ReasonRejected, ReasonExhausted, ReasonMaxDeliveries, ReasonUnmapped:
		return true
	}
	return false
}

// deleteLetter deletes the letter at seq; deleted is false when it was
// gone already (JetStream answers a failed delete, without a code to tell
// why, for a sequence already deleted: a look-up tells).
func deleteLetter(ctx context.Context, str jetstream.Stream, seq uint64) (deleted bool, err error) {
	err = str.DeleteMsg(ctx, seq)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		if _, gerr := str.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return false, nil
		}
	}
	return false, fmt.Errorf("dlq: delete %d: %w", seq, err)
}
