package app

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestReadmeListsEveryVariable keeps the README's configuration table equal
// to what envconfig reads: a new or changed setting fails here until the
// README is regenerated with 'patchbay env'.
func TestReadmeListsEveryVariable(t *testing.T) {
	cfg := &allConfig{}
	var buf bytes.Buffer
	if err := printEnv(cfg, &buf); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 40 {
		t.Fatalf("only %d lines of configuration printed", len(lines))
	}
	for _, line := range lines {
		if !bytes.Contains(readme, []byte(line)) {
			t.Errorf("README.md lacks the line %q (regenerate with 'go run ./cmd/patchbay env')", line)
		}
	}
}

func TestMainRejectsUnknownCommand(t *testing.T) {
	if code := Main([]string{"frobnicate"}); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
}
