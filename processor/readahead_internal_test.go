package processor

import (
	"testing"
	"time"
)

func TestCatchUpHoldsWhileABacklogIsRead(t *testing.T) {
	now := time.Unix(1000, 0)
	limited := func() bool { return true }
	var c catchUp
	if wait, _ := c.holding(now, true, limited); wait {
		t.Fatal("holding with nothing fetched")
	}
	c.note("a", 500, now)
	if wait, until := c.holding(now.Add(10*time.Millisecond), true, limited); !wait || !until.Equal(now.Add(catchUpQuiet)) {
		t.Fatalf("a backlog being read: holding %v until %v", wait, until)
	}
	if wait, _ := c.holding(now, false, limited); wait {
		t.Fatal("holding with no room left: nothing more can be read")
	}
	if wait, _ := c.holding(now, true, func() bool { return false }); wait {
		t.Fatal("holding for a target without a limit")
	}
	if wait, _ := c.holding(now.Add(catchUpQuiet), true, limited); wait {
		t.Fatal("holding after the fetchers went quiet")
	}
	// Messages keep coming: at most catchUpMax.
	for d := time.Duration(0); d < catchUpMax; d += 50 * time.Millisecond {
		c.note("a", 100, now.Add(d))
	}
	if wait, _ := c.holding(now.Add(catchUpMax), true, limited); wait {
		t.Fatal("holding past catchUpMax")
	}
	// Caught up on one consumer, still behind on another.
	c = catchUp{}
	c.note("a", 10, now)
	c.note("b", 0, now)
	c.note("a", 0, now)
	if wait, _ := c.holding(now, true, limited); wait {
		t.Fatal("holding once every consumer is caught up")
	}
	c.note("b", 3, now)
	if wait, _ := c.holding(now, true, limited); !wait {
		t.Fatal("not holding while one consumer is behind")
	}
}
