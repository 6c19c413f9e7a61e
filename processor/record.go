package processor

import (
	"slices"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/history"
	"github.com/patchbay/patchbay/processor/lww"
	"github.com/patchbay/patchbay/stream"
)

// clockOf is ev's clock with the source ingest named in p's headers.
func clockOf(p *pending, ev *events.Event) lww.Clock {
	c := lww.ClockOf(ev)
	c.Source = p.msg.Headers().Get(stream.SourceHeader)
	return c
}

// delivery is what one PATCH of a contact carried, for its history
// record: the events and their clocks, the merged clocks, what was sent,
// what Filter dropped and the state it was filtered against.
type delivery struct {
	msgs    []pending
	evs     []events.Event
	changes []lww.Change
	clocks  map[string]lww.Clock // merged: per field, the newest queued clock
	sent    map[string]lww.Clock // the PATCH's fields (nil: nothing sent)
	dropped []string             // dropped by Filter: a stored clock beat them
	st      lww.State
}

// record writes the delivery's history record with outcome and the
// provider's status. It holds event ids, clocks, sources and field names,
// never values. The publish does not wait for JetStream (see
// history.Recorder); a failure is counted, not logged per delivery.
func (l *lane) record(d *delivery, outcome string, status int) {
	rec := l.w.history
	if rec == nil {
		return
	}
	var (
		evBuf    [4]history.Event
		fieldBuf [16]string
		repBuf   [4]string
	)
	r := history.Record{
		At: l.w.now().UTC(), Target: l.target, Contact: d.evs[0].ContactID,
		Outcome: outcome, Status: status, Events: evBuf[:0],
	}
	for i := range d.evs {
		c := d.changes[i].Clock
		r.Events = append(r.Events, history.Event{Clock: hclock(c), Seq: d.msgs[i].seq})
	}
	if len(d.sent) > 0 {
		r.Fields = fieldBuf[:0]
		for name, c := range d.sent {
			r.Fields = append(r.Fields, name)
			if d.st.IsPending(name) && c.Equal(d.st.Fields[name]) {
				if r.Repaired == nil {
					r.Repaired = repBuf[:0]
				}
				r.Repaired = append(r.Repaired, name)
			}
		}
		slices.Sort(r.Fields)
		slices.Sort(r.Repaired)
	}
	for _, name := range d.dropped {
		r.Dropped = append(r.Dropped, history.Dropped{
			EventID: d.clocks[name].ID, Field: name, By: hclock(d.st.Fields[name]), Stored: true,
		})
	}
	if len(d.evs) > 1 {
		// Fields lost inside the merge: another queued event set them
		// with a newer clock.
		for i := range d.evs {
			own := d.changes[i].Clock
			names, err := lww.Fields(l.target, d.evs[i].Patch)
			if err != nil {
				continue
			}
			for _, name := range names {
				if win, ok := d.clocks[name]; ok && !win.Equal(own) {
					r.Dropped = append(r.Dropped, history.Dropped{EventID: own.ID, Field: name, By: hclock(win)})
				}
			}
		}
	}
	if err := rec.Record(&r); err != nil {
		l.w.m.historyFailed.WithLabelValues(l.name).Inc()
	}
}

// hclock is c as a history record shows it.
func hclock(c lww.Clock) history.Clock {
	return history.Clock{EventID: c.ID, OccurredAt: c.At.UTC(), Source: c.Source}
}
