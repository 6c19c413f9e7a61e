package processor_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestOtherTargetFlowsWhileOnePaused guards "a paused target's backlog
// stays in the stream, the other target flowing meanwhile" and "the paused
// gauge is 1 while a target is paused and back to 0 when the pause ends":
// Skipcall refuses every request (a revoked key answering 401, or 429s
// from another client of the key) for a pause of several seconds, and
// RevyOps events posted during that pause must be applied before it ends.
// Then Skipcall accepts again, its held event is applied once, the gauge
// returns to 0 while the worker runs, and nothing is dead-lettered.
func TestOtherTargetFlowsWhileOnePaused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		status int
		// refuse makes Skipcall refuse every request; accept undoes it.
		refuse, accept func(*pbtest.Stack)
		opts           pbtest.Options
		credPause      time.Duration
	}{
		{
			name: "401 revoked key", status: http.StatusUnauthorized,
			refuse: func(s *pbtest.Stack) {
				s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, http.StatusUnauthorized, "UNAUTHORIZED")
			},
			accept:    func(s *pbtest.Stack) { s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, 0, "") },
			credPause: 10 * time.Second, // the first probe 8–12 s after the refusal
		},
		{
			name: "429 without reset headers", status: http.StatusTooManyRequests,
			refuse: func(s *pbtest.Stack) { s.Skipcall.FailNext(-1, http.StatusTooManyRequests) },
			accept: func(s *pbtest.Stack) { s.Skipcall.FailNext(0, 0) },
			// A 429 without headers pauses until the budget's window ends:
			// about 11 s after the window opened with the refused request.
			opts: pbtest.Options{SkipcallWindow: 10 * time.Second},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, tc.opts)
			uuid := "e1e1e1e1-2222-4333-8444-555555555555"
			s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
			const revContacts = 5
			for i := range revContacts {
				s.RevyOps.PutContact(int64(500+i), map[string]any{"first_name": "A", "last_name": "B"})
			}
			tc.refuse(s)
			cfg := pbtest.WorkerConfig()
			cfg.MaxAttempts = 1 // a refusal that used up an attempt would dead-letter at once
			if tc.credPause > 0 {
				cfg.CredentialsPause = tc.credPause
			}
			w := startObserved(t, s, cfg, nil)
			skipBudget := w.targets[events.TargetSkipcall].Budget

			s.PostEvent(skipEvent("paused-1", uuid, map[string]any{"city": "Lille"}))
			pbtest.Eventually(t, waitFor, fmt.Sprintf("Skipcall answering %d and the worker's paused gauge at 1", tc.status), func() bool {
				return s.Skipcall.StatusCounts()[tc.status] > 0 && w.paused(t, "skipcall") == 1
			})
			pauseEnd, _ := skipBudget.Blocked()
			if !pauseEnd.After(time.Now()) {
				t.Fatalf("the Skipcall pause already ended (%s); the scenario proves nothing", pauseEnd)
			}
			refused := s.Skipcall.StatusCounts()[tc.status]

			for i := range revContacts {
				s.PostEvent(revEvent(fmt.Sprintf("flowing-%d", i), int64(500+i), map[string]any{"first_name": fmt.Sprintf("R%d", i)}))
			}
			pbtest.Eventually(t, waitFor, "every RevyOps event applied while Skipcall is paused", func() bool {
				for i := range revContacts {
					if c, _ := s.RevyOps.Contact(int64(500 + i)); c["first_name"] != fmt.Sprintf("R%d", i) {
						return false
					}
				}
				return true
			})
			if now := time.Now(); !now.Before(pauseEnd) {
				t.Fatalf("the RevyOps events were applied only %s after the Skipcall pause ended: a paused target held up the other", now.Sub(pauseEnd).Round(time.Millisecond))
			}
			if got := s.Skipcall.StatusCounts()[tc.status]; got != refused {
				t.Fatalf("Skipcall saw %d more refused requests while paused: the pause did not hold", got-refused)
			}
			if g := w.paused(t, "skipcall"); g != 1 {
				t.Fatalf("paused gauge of skipcall is %v during its pause, want 1", g)
			}
			if g := w.paused(t, "revyops"); g != 0 {
				t.Fatalf("paused gauge of revyops is %v while it flows, want 0", g)
			}
			if info := consumerInfo(t, s, "skipcall"); info.NumAckPending+int(info.NumPending) != 1 {
				t.Fatalf("the Skipcall event is not waiting during the pause: %d unacknowledged, %d pending", info.NumAckPending, info.NumPending)
			}
			if n := s.Skipcall.PatchCount(uuid); n != 0 {
				t.Fatalf("Skipcall applied %d PATCHes while refusing every request", n)
			}

			tc.accept(s)
			pbtest.Eventually(t, 2*waitFor, "the held Skipcall event applied once Skipcall accepts again", func() bool {
				c, _ := s.Skipcall.Contact(uuid)
				return c["city"] == "Lille"
			})
			pbtest.Eventually(t, waitFor, "the paused gauge of skipcall back to 0 while the worker runs", func() bool {
				return w.paused(t, "skipcall") == 0
			})
			pbtest.Eventually(t, waitFor, "events stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
			if n := s.Skipcall.PatchCount(uuid); n != 1 {
				t.Errorf("the Skipcall contact was PATCHed %d times, want 1", n)
			}
			for i := range revContacts {
				if n := s.RevyOps.PatchCount(int64(500 + i)); n != 1 {
					t.Errorf("RevyOps contact %d PATCHed %d times, want 1", 500+i, n)
				}
			}
			if ls := dlqLetters(t, s); len(ls) != 0 {
				t.Fatalf("%d dead letters: a pause must never dead-letter: %+v", len(ls), ls[0])
			}
		})
	}
}
