package processor_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestPausedTargetSendsNoPullRequest guards "no pull request goes out
// while the target is paused" (fetcher.paused): a revoked key pauses
// Skipcall for about 10 s; once the pull request sent before the pause has
// expired (5 s), the fetcher sends none while the pause lasts, so a
// paused target's backlog stays in the stream. The test watches the first
// 7 s of the pause.
func TestPausedTargetSendsNoPullRequest(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "f1f1f1f1-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, http.StatusUnauthorized, "UNAUTHORIZED")
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 1
	cfg.CredentialsPause = 12 * time.Second // the first probe some 8–16 s after the refusal
	pulls := watchPulls(t, s, "skipcall")
	w := startObserved(t, s, cfg, nil)
	s.PostEvent(skipEvent("paused-pull-1", uuid, map[string]any{"city": "Lyon"}))
	pbtest.Eventually(t, waitFor, "Skipcall refusing the key and the target paused", func() bool {
		return s.Skipcall.StatusCounts()[http.StatusUnauthorized] > 0 && w.paused(t, "skipcall") == 1
	})
	pauseStart := time.Now()
	pauseEnd, _ := w.targets[events.TargetSkipcall].Budget.Blocked()
	watchEnd := pauseStart.Add(7 * time.Second)
	if pauseEnd.Before(watchEnd.Add(time.Second)) {
		t.Fatalf("the pause ends in %s; the test needs one of 8 s at least, longer than the pull request's 5 s expiry", pauseEnd.Sub(pauseStart))
	}
	// The request sent before the pause expires within 5 s of it; from
	// then on, nothing while the pause lasts.
	pbtest.Eventually(t, waitFor, "7 s of the pause watched", func() bool { return time.Now().After(watchEnd) })
	if n := pulls.between(pauseStart.Add(time.Second), watchEnd); n != 0 {
		t.Fatalf("%d pull requests while Skipcall was paused (%s to %s): a paused target's fetcher kept pulling", n, pauseStart.Format("15:04:05.000"), watchEnd.Format("15:04:05.000"))
	}
}
