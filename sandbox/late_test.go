package sandbox_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/sandbox"
)

// TestSkipcallLateApplyLandsAfterTheClientLeft: with LateRate 1 a PATCH is
// held for LateDelay and applied then, although its client gave up in the
// meantime; it is recorded as late and counted.
func TestSkipcallLateApplyLandsAfterTheClientLeft(t *testing.T) {
	s, srv := newSkipcall(t, sandbox.SkipcallConfig{})
	s.PutContact(skipID, map[string]any{"firstName": "A", "lastName": "B"})
	s.SetFaults(sandbox.Faults{LateRate: 1, LateDelay: 300 * time.Millisecond})
	cancel, done := held(t, srv, skipURL, skipAuth, `{"city":"Late"}`)
	eventually(t, "the PATCH in flight", func() bool { return s.InFlight(skipID) == 1 })
	cancel() // the client gives up before the delay ends
	<-done
	if c, _ := s.Contact(skipID); c["city"] == "Late" {
		t.Fatal("applied before the client left: the fault is not late")
	}
	eventually(t, "the late PATCH applied", func() bool {
		c, _ := s.Contact(skipID)
		return c["city"] == "Late"
	})
	eventually(t, "the late PATCH recorded", func() bool { return len(s.Requests()) == 1 })
	if n := s.LateApplies(); n != 1 {
		t.Errorf("LateApplies = %d, want 1", n)
	}
	if r := s.Requests()[0]; !r.Late {
		t.Errorf("request recorded as %+v, want Late", r)
	}
	// A client that waits gets the answer after the delay; LateRate 0 is
	// on time.
	start := time.Now()
	if r := call(t, srv, http.MethodPatch, skipURL, skipAuth, `{"city":"Waited"}`); r.status != http.StatusOK || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("late PATCH with a waiting client: %d after %s", r.status, time.Since(start))
	}
	s.SetFaults(sandbox.Faults{})
	if r := call(t, srv, http.MethodPatch, skipURL, skipAuth, `{"city":"Now"}`); r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	if n, rs := s.LateApplies(), s.Requests(); n != 2 || rs[len(rs)-1].Late {
		t.Errorf("LateApplies = %d, want 2; last request late = %v, want false", n, rs[len(rs)-1].Late)
	}
}

// TestRevyOpsLateApply: RevyOps applies a late PATCH after its delay too.
func TestRevyOpsLateApply(t *testing.T) {
	s, srv := newRevyOps(t, sandbox.RevyOpsConfig{})
	s.PutContact(42, map[string]any{"first_name": "Old", "last_name": "Name"})
	s.SetFaults(sandbox.Faults{LateRate: 1, LateDelay: 200 * time.Millisecond})
	start := time.Now()
	r := call(t, srv, http.MethodPatch, "/public/v2/contacts/42?structure=FLAT", revAuth, `{"first_name":"Grace"}`)
	if r.status != http.StatusOK || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("late PATCH: %d after %s", r.status, time.Since(start))
	}
	if r.body["first_name"] != "Grace" || s.LateApplies() != 1 {
		t.Fatalf("first_name %v, LateApplies %d", r.body["first_name"], s.LateApplies())
	}
}
