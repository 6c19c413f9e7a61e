package lww

import (
	"bytes"
	"fmt"
)

// SkipProof makes s read a replicated bucket as if it had one replica:
// batched reads are used without proving that the replica which answered
// is current. For measuring what the proof costs; never correct on R3.
func SkipProof(s *Store) {
	if s.reader != nil {
		s.reader.sentinel = ""
	}
}

// SplitMatchesPatch reports, as an error, how the fields sp holds differ
// from those of sp.Patch() split again at its target: a Split must hold the
// units of the bytes it returns.
func SplitMatchesPatch(sp Split) error {
	got, _ := sp.unitsAt(nil, sp.target)
	if sp.patch == nil {
		if len(got) > 0 {
			return fmt.Errorf("no patch, but %d units", len(got))
		}
		return nil
	}
	want, err := units(nil, sp.target, sp.patch, false)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d units, the patch has %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.name != w.name || g.top != w.top || g.sub != w.sub || g.keyed != w.keyed || !bytes.Equal(g.val, w.val) {
			return fmt.Errorf("unit %d is %+v, the patch's %+v", i, g, w)
		}
	}
	return nil
}
