package ingest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/patchbay/patchbay/events"
)

// TestAcceptedJSONIsEncodingJSONs: the hand-written 202 body is byte for
// byte what encoding/json's Encoder writes, for ids that need escaping too.
func TestAcceptedJSONIsEncodingJSONs(t *testing.T) {
	ids := []string{"evt-1", "", `a"b`, `back\slash`, "tab\there", "<html>&", "zoë", "bad\xffutf8", "\u2028", "del\x7f"}
	for n := 0; n <= len(ids); n++ {
		a := Accepted{Accepted: n, Events: make([]AcceptedEvent, n)}
		for i := range n {
			a.Events[i] = AcceptedEvent{ID: ids[i], Seq: uint64(i * 1000003), Duplicate: i%3 == 1}
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(a); err != nil {
			t.Fatal(err)
		}
		if got := a.appendJSON(nil); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%d events:\n got %s\nwant %s", n, got, want.Bytes())
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("evt-1")
	f.Add("a\"b\\c\x00\xff<")
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestCountEventsPerTarget(t *testing.T) {
	h := &Handler{m: newMetrics(nil)}
	evs := []events.Event{{Target: events.TargetSkipcall}, {Target: events.TargetSkipcall}, {Target: events.TargetRevyOps}, {Target: events.TargetSkipcall}}
	h.countEvents(evs)
	h.countEvents(evs[2:3])
	h.countEvents(nil)
	for target, want := range map[events.Target]float64{events.TargetSkipcall: 3, events.TargetRevyOps: 2} {
		if got := testutil.ToFloat64(h.m.events.WithLabelValues(string(target))); got != want {
			t.Errorf("%s events counted %v, want %v", target, got, want)
		}
	}
}
