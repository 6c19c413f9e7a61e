package app

import (
	"flag"
	"io"
	"strings"
	"time"
)

// CommandFlags returns the flags of the operator command at path ("dlq
// list", "dlq replay", …) as the command defines them, for checks that the
// documentation names only flags that exist; false for a path whose flags
// are not built this way. The flag set is never parsed or run.
func CommandFlags(path string) (*flag.FlagSet, bool) {
	for name, cmd := range map[string]func(*flag.FlagSet, func() time.Time) dlqRun{
		"dlq list": dlqList, "dlq show": dlqShow, "dlq replay": dlqReplay, "dlq purge": dlqPurge,
	} {
		if name == path {
			fs := flag.NewFlagSet(path, flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cmd(fs, time.Now)
			return fs, true
		}
	}
	if path == "targets pause" || path == "targets resume" {
		fs := flag.NewFlagSet(path, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		targetsFlags(fs)
		return fs, true
	}
	if name, ok := strings.CutPrefix(path, "contacts "); ok {
		if cmd := contactsViewCommand(name); cmd != nil {
			fs := flag.NewFlagSet(path, flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cmd(fs)
			return fs, true
		}
	}
	return nil, false
}

// CommandFlagPaths lists the paths CommandFlags knows.
func CommandFlagPaths() []string {
	return []string{"dlq list", "dlq show", "dlq replay", "dlq purge", "contacts show", "contacts history", "targets pause", "targets resume"}
}
