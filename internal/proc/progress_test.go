package proc

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ci is one poll's view of consumer "w": ack floor, undelivered, ack-pending.
func ci(floor, pending uint64, ackPending int) *jetstream.ConsumerInfo {
	return &jetstream.ConsumerInfo{Name: "w", AckFloor: jetstream.SequenceInfo{Stream: floor}, NumPending: pending, NumAckPending: ackPending}
}

// TestProgressSpans feeds polls one second apart and checks which spans
// count as stalls: only a floor that stays put while messages are pending,
// only while armed, measured from the arming at the earliest.
func TestProgressSpans(t *testing.T) {
	type poll struct {
		info  *jetstream.ConsumerInfo
		arm   bool // disarm before this poll when false and armed was true
		blind bool // the poll failed
	}
	cases := []struct {
		name      string
		polls     []poll
		longest   time.Duration
		violating int
		limit     time.Duration // 0: 2.5 s
	}{
		{"floor moves every poll", []poll{{ci(0, 100, 0), true, false}, {ci(10, 90, 5), true, false}, {ci(20, 80, 5), true, false}, {ci(30, 70, 5), true, false}}, time.Second, 0, 0}, // the first second runs from the arming
		{"floor stuck with messages undelivered", []poll{{ci(5, 100, 0), true, false}, {ci(5, 100, 0), true, false}, {ci(5, 100, 0), true, false}, {ci(5, 100, 0), true, false}, {ci(6, 99, 0), true, false}}, 4 * time.Second, 1, 0},
		{"floor stuck with messages unacknowledged", []poll{{ci(5, 0, 3), true, false}, {ci(5, 0, 3), true, false}, {ci(5, 0, 3), true, false}, {ci(5, 0, 3), true, false}}, 4 * time.Second, 1, 0},
		{"floor still because nothing is pending", []poll{{ci(5, 0, 0), true, false}, {ci(5, 0, 0), true, false}, {ci(5, 0, 0), true, false}, {ci(5, 0, 0), true, false}}, 0, 0, 0},
		{"stuck only while disarmed", []poll{{ci(5, 100, 0), false, false}, {ci(5, 100, 0), false, false}, {ci(5, 100, 0), false, false}, {ci(6, 99, 0), true, false}, {ci(7, 98, 0), true, false}}, 1 * time.Second, 0, 0},
		{"blind polls still count", []poll{{ci(5, 100, 0), true, false}, {nil, true, true}, {nil, true, true}, {ci(5, 100, 0), true, false}}, 4 * time.Second, 1, 0},
		{"a longer limit for the window", []poll{{ci(5, 100, 0), true, false}, {ci(5, 100, 0), true, false}, {ci(5, 100, 0), true, false}, {ci(5, 100, 0), true, false}}, 4 * time.Second, 0, 5 * time.Second},
		{"becomes pending late", []poll{{ci(5, 0, 0), true, false}, {ci(5, 0, 0), true, false}, {ci(5, 0, 0), true, false}, {ci(5, 10, 0), true, false}, {ci(5, 10, 0), true, false}}, 2 * time.Second, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &Progress{cfg: ProgressConfig{Stream: "S", Limit: 2500 * time.Millisecond}, consumers: map[string]*floor{}}
			if tc.limit > 0 {
				p.cfg.Limit = tc.limit
			}
			t0 := time.Now()
			armed := false
			for i, pl := range tc.polls {
				now := t0.Add(time.Duration(i+1) * time.Second)
				if pl.arm && !armed {
					p.Arm()
					p.armedAt = now.Add(-time.Second)
				} else if !pl.arm && armed {
					p.Disarm()
				}
				armed = pl.arm
				if pl.blind {
					p.observe(now, nil, errBlind)
					continue
				}
				p.observe(now, []*jetstream.ConsumerInfo{pl.info}, nil)
			}
			if got := p.Longest().Length; got != tc.longest {
				t.Errorf("longest span %s, want %s", got, tc.longest)
			}
			if got := len(p.Violations()); got != tc.violating {
				t.Errorf("%d violations, want %d", got, tc.violating)
			}
			if err := p.Err(); (err != nil) != (tc.violating > 0) || err != nil && !strings.Contains(err.Error(), "consumer w") {
				t.Errorf("Err() = %v", err)
			}
		})
	}
}

var errBlind = errString("no responders")

type errString string

func (e errString) Error() string { return string(e) }
