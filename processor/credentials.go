package processor

import "time"

// credsOutcome is what a delivery learnt about the target's credentials.
type credsOutcome int

const (
	credsUnknown  credsOutcome = iota // no provider answer (no call, network error)
	credsRejected                     // 401/403-class answer: the key or plan is bad
	credsAccepted                     // any other answer: the key works
)

// credentials is a lane's state after the provider rejected its key. The
// target pauses for CredentialsPause; then one job at a time probes it.
// While probes fail the pause doubles, up to 16 times CredentialsPause; the
// first accepted probe reopens the target. Owned by the lane's loop.
type credentials struct {
	failing  bool
	failures int
	probing  bool
}

// admit reports whether a job may start: always while the key works, and
// one probe at a time while it does not.
func (c *credentials) admit() bool { return !c.failing || !c.probing }

// mark flags j as the probe if the key is failing. It changes nothing in
// c: the job may not be handed out (see started).
func (c *credentials) mark(j job) job {
	j.probe = c.failing
	return j
}

// started records that j was handed out.
func (c *credentials) started(j job) {
	if j.probe {
		c.probing = true
	}
}

// finished takes a job's result into account and pauses the target after a
// rejection.
func (c *credentials) finished(l *lane, r result, now time.Time) {
	if r.job.probe {
		c.probing = false
	}
	switch r.creds {
	case credsRejected:
		if !c.failing || r.job.probe { // several calls in flight when the key broke count once
			c.failures++
		}
		c.failing = true
		pause := l.w.cfg.CredentialsPause << min(c.failures-1, 4)
		if l.gate.PauseUntil(now.Add(pause), "credentials rejected") {
			l.w.log.Error("PROVIDER REJECTED OUR CREDENTIALS: deliveries to this target are paused; fix the API key or plan",
				"provider", l.name, "failures", c.failures, "probe_in", pause)
		}
		l.showPaused()
	case credsAccepted:
		if c.failing && r.job.probe {
			l.w.log.Info("provider accepts our credentials again; deliveries resume", "provider", l.name, "after_failures", c.failures)
			c.failing, c.failures = false, 0
			l.showPaused()
		}
	}
}
