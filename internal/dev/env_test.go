package dev

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/internal/app"
)

// TestReadmeListsEveryVariable keeps the README's configuration table equal
// to what envconfig reads in the patchbay binary: a new or changed setting
// fails here until the README is regenerated with 'patchbay env'.
func TestReadmeListsEveryVariable(t *testing.T) {
	var extra []app.EnvSpec
	for _, c := range Commands() {
		extra = append(extra, c.Env...)
	}
	var buf bytes.Buffer
	if err := app.PrintEnv(&buf, extra...); err != nil {
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
