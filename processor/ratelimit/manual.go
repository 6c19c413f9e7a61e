package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// keyTarget is the record naming a budget's target: <budget id>.target.
// The budget id hides the API key, so this record is how an operator's
// tool, which knows target names and not keys, finds a target's budgets.
const keyTarget = "target"

// targetRecord is what a budget's target record holds.
type targetRecord struct {
	Target   string `json:"target"`
	Limit    int    `json:"limit"`
	WindowMS int64  `json:"window_ms"`
}

// recordTarget writes the budget's target record (once per New).
func (b *Budget) recordTarget(ctx context.Context) error {
	data, _ := json.Marshal(targetRecord{Target: b.cfg.Name, Limit: b.cfg.Limit, WindowMS: b.cfg.Window.Milliseconds()})
	if _, err := b.st.kv.Put(ctx, b.key(keyTarget), data); err != nil {
		return fmt.Errorf("ratelimit: target record: %w", err)
	}
	return nil
}

// ErrUnknownTarget is returned by Operator for a target no worker has
// started a budget for in the bucket.
var ErrUnknownTarget = errors.New("ratelimit: no rate budget of this target in NATS (has a worker run with it?)")

// Operator pauses and resumes targets by hand and reads every budget's
// state, from any process connected to NATS: it reads and writes the same
// shared records the workers' Budgets watch, so every replica honours a
// pause within milliseconds. A target has one budget per API key it was
// run with; Operator acts on all of them.
type Operator struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewOperator opens the budgets' bucket (Config.Bucket; DefaultBucket if
// empty). It fails with ErrUnknownTarget wrapped if the bucket does not
// exist yet (no worker has run).
func NewOperator(ctx context.Context, js jetstream.JetStream, bucket string) (*Operator, error) {
	if bucket == "" {
		bucket = DefaultBucket
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: bucket %s does not exist", ErrUnknownTarget, bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("ratelimit: bucket %s: %w", bucket, err)
	}
	return &Operator{kv: kv, now: time.Now}, nil
}

// budget is one budget found in the bucket.
type budget struct {
	id  string
	rec targetRecord
}

// budgets lists the budgets of target ("": all), ordered by target and id.
func (o *Operator) budgets(ctx context.Context, target string) ([]budget, error) {
	lister, err := o.kv.ListKeysFiltered(ctx, "*."+keyTarget)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: list budgets: %w", err)
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, strings.TrimSuffix(k, "."+keyTarget))
	}
	var out []budget
	for _, id := range ids {
		e, err := o.kv.Get(ctx, id+"."+keyTarget)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ratelimit: read budget %s: %w", id[:min(8, len(id))], err)
		}
		var rec targetRecord
		if json.Unmarshal(e.Value(), &rec) != nil || target != "" && rec.Target != target {
			continue
		}
		out = append(out, budget{id: id, rec: rec})
	}
	slices.SortFunc(out, func(a, b budget) int {
		return cmpOr(strings.Compare(a.rec.Target, b.rec.Target), strings.Compare(a.id, b.id))
	})
	return out, nil
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// readPause returns a budget's pause record and its revision (0: none).
func (o *Operator) readPause(ctx context.Context, id string) (pause, uint64, error) {
	e, err := o.kv.Get(ctx, id+"."+keyPause)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return pause{}, 0, nil
	case err != nil:
		return pause{}, 0, fmt.Errorf("ratelimit: read pause: %w", err)
	}
	var p pause
	if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &p) != nil {
		p = pause{}
	}
	return p, e.Revision(), nil
}

// States returns the state of every budget in the bucket, ordered by
// target, as the shared records say now.
func (o *Operator) States(ctx context.Context) ([]State, error) {
	bs, err := o.budgets(ctx, "")
	if err != nil {
		return nil, err
	}
	now := o.now()
	out := make([]State, 0, len(bs))
	for _, b := range bs {
		p, _, err := o.readPause(ctx, b.id)
		if err != nil {
			return nil, err
		}
		var w window
		if e, err := o.kv.Get(ctx, b.id+"."+keyWindow); err == nil && e.Operation() == jetstream.KeyValuePut {
			_ = json.Unmarshal(e.Value(), &w)
		} else if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("ratelimit: read window: %w", err)
		}
		st := stateOf(b.rec.Target, b.rec.Limit, now, w, p)
		st.Budget = b.id[:min(8, len(b.id))]
		out = append(out, st)
	}
	return out, nil
}

// Pause pauses target by hand for every replica, with who paused it and
// why: nothing is sent to it, and nothing is dead-lettered for it, until
// Resume. The pause never ends by itself. It replaces a rate-limit or
// credentials pause (those come back at the next request if they still
// hold); a target already paused by hand keeps its first pause. It
// returns how many of the target's budgets it paused, and ErrUnknownTarget
// wrapped when the target has none.
func (o *Operator) Pause(ctx context.Context, target, by, reason string) (int, error) {
	return o.update(ctx, target, func(now time.Time, p pause) (pause, bool) {
		if p.Kind == kindManual {
			return p, false
		}
		return pause{Kind: kindManual, By: by, Reason: reason, Since: now.UnixMilli()}, true
	})
}

// Resume ends a pause by hand of target for every replica; other pauses
// (a provider's 429, refused credentials) are left as they are. It returns
// how many budgets it resumed (0: none was paused by hand).
func (o *Operator) Resume(ctx context.Context, target string) (int, error) {
	return o.update(ctx, target, func(_ time.Time, p pause) (pause, bool) {
		if p.Kind != kindManual {
			return p, false
		}
		return pause{}, true
	})
}

// update applies f to the pause record of every budget of target by
// compare-and-set and returns how many it wrote.
func (o *Operator) update(ctx context.Context, target string, f func(now time.Time, p pause) (pause, bool)) (int, error) {
	bs, err := o.budgets(ctx, target)
	if err != nil {
		return 0, err
	}
	if len(bs) == 0 {
		return 0, fmt.Errorf("%w: %q", ErrUnknownTarget, target)
	}
	n := 0
	for _, b := range bs {
		for try := 0; ; try++ {
			p, rev, err := o.readPause(ctx, b.id)
			if err != nil {
				return n, err
			}
			next, write := f(o.now(), p)
			if !write {
				break
			}
			data, _ := json.Marshal(next)
			if rev == 0 {
				_, err = o.kv.Create(ctx, b.id+"."+keyPause, data)
			} else {
				_, err = o.kv.Update(ctx, b.id+"."+keyPause, data, rev)
			}
			if err == nil {
				n++
				break
			}
			if !isConflict(err) || try >= maxCAS {
				return n, fmt.Errorf("ratelimit: update pause of %s: %w", target, err)
			}
		}
	}
	return n, nil
}
