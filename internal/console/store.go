package console

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
)

// StoreLetters adapts the dead-letter stream to Letters. It reads at most
// Scan letters (default 10,000) per listing and filters them here; the
// dlq package's own filtered listing replaces it once it lands.
type StoreLetters struct {
	Store  *dlq.Store
	JS     jetstream.JetStream
	Stream string // the dead-letter stream
	Prefix string // the subject prefix
	Scan   int
}

func (s StoreLetters) all(ctx context.Context, q Query) ([]dlq.Letter, error) {
	filter := ""
	if q.Target != "" && validToken(q.Target) {
		filter = s.Prefix + ".dlq." + q.Target + ".>"
	}
	scan := s.Scan
	if scan <= 0 {
		scan = 10_000
	}
	ls, err := s.Store.List(ctx, filter, scan)
	if err != nil {
		return nil, err
	}
	out := ls[:0]
	for _, l := range ls {
		if q.matches(l) {
			out = append(out, l)
		}
	}
	slices.Reverse(out)
	return out, nil
}

// validToken reports whether s can stand as one token of a subject filter.
func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// List implements Letters.
func (s StoreLetters) List(ctx context.Context, q Query) (Page, error) {
	ls, err := s.all(ctx, q)
	if err != nil {
		return Page{}, err
	}
	if q.Before != 0 {
		i, _ := slices.BinarySearchFunc(ls, q.Before, func(l dlq.Letter, seq uint64) int {
			// ls is sorted by descending sequence.
			switch {
			case l.DLQSeq >= seq:
				return -1
			default:
				return 1
			}
		})
		ls = ls[i:]
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	var p Page
	if len(ls) > limit {
		ls = ls[:limit]
		p.Next = ls[limit-1].DLQSeq
	}
	p.Letters = ls
	return p, nil
}

// Summary implements Letters.
func (s StoreLetters) Summary(ctx context.Context, q Query) ([]Count, error) {
	ls, err := s.all(ctx, q)
	if err != nil {
		return nil, err
	}
	return summarize(ls), nil
}

// summarize counts letters by reason and target, largest count first.
func summarize(ls []dlq.Letter) []Count {
	type key struct {
		r dlq.Reason
		t string
	}
	n := map[key]int{}
	for _, l := range ls {
		n[key{l.Reason, l.Target}]++
	}
	out := make([]Count, 0, len(n))
	for k, v := range n {
		out = append(out, Count{Reason: k.r, Target: k.t, N: v})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.N != b.N {
			return b.N - a.N
		}
		return strings.Compare(string(a.Reason)+"/"+a.Target, string(b.Reason)+"/"+b.Target)
	})
	return out
}

// Get implements Letters.
func (s StoreLetters) Get(ctx context.Context, seq uint64) (dlq.Letter, error) {
	return s.Store.Get(ctx, seq)
}

// Replay implements Letters.
func (s StoreLetters) Replay(ctx context.Context, seq uint64, data []byte) error {
	return s.Store.Replay(ctx, seq, data)
}

// Purge implements Letters.
func (s StoreLetters) Purge(ctx context.Context, seq uint64) error {
	str, err := s.JS.Stream(ctx, s.Stream)
	if err != nil {
		return fmt.Errorf("console: stream %s: %w", s.Stream, err)
	}
	if err := str.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("%w: sequence %d", dlq.ErrNotFound, seq)
		}
		return fmt.Errorf("console: purge %d: %w", seq, err)
	}
	return nil
}

// matches reports whether l is one of the letters q selects (ignoring the
// page cursor).
func (q Query) matches(l dlq.Letter) bool {
	switch {
	case q.Target != "" && l.Target != q.Target,
		q.Reason != "" && l.Reason != q.Reason,
		q.Status != 0 && l.Status != q.Status,
		q.ErrorCode != "" && !strings.EqualFold(l.ErrorCode, q.ErrorCode),
		q.Contact != "" && contactOf(l) != q.Contact && l.SourceContactID != q.Contact,
		!q.Since.IsZero() && l.DeadAt.Before(q.Since),
		!q.Until.IsZero() && !l.DeadAt.Before(q.Until):
		return false
	}
	return true
}

// contactOf returns the contact id at the target: the last token of the
// original subject <prefix>.patch.<target>.<contact>.
func contactOf(l dlq.Letter) string {
	if i := strings.LastIndexByte(l.Subject, '.'); i >= 0 && strings.Count(l.Subject, ".") >= 3 {
		return l.Subject[i+1:]
	}
	return ""
}
