package docscheck

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/internal/app"
	"github.com/patchbay/patchbay/internal/dev"
)

// repoRoot is the repository's root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

// documents parses README.md and every docs/*.md.
func documents(t *testing.T, root string) []*Doc {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append([]string{filepath.Join(root, "README.md")}, paths...)
	var docs []*Doc
	for _, p := range paths {
		d, err := ParseFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	return docs
}

// cliSpec is the patchbay binary's command line: the paths its usage
// prints (dev mode and the bench included) and the flags the code of
// internal/ defines for each.
func cliSpec(t *testing.T, root string) Spec {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cli := app.CLI{Stdout: &stdout, Stderr: &stderr, Commands: dev.Commands()}
	if code := cli.Run(context.Background(), []string{"help"}); code != 0 {
		t.Fatalf("patchbay help: exit %d: %s", code, stderr.String())
	}
	paths := UsagePaths(stderr.String())
	if len(paths) < 5 {
		t.Fatalf("only %d command paths read from the usage:\n%s", len(paths), stderr.String())
	}
	flags, err := FlagsFromSource(filepath.Join(root, "internal"), filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	// Commands whose flag sets are built at run time (their names are not
	// literals in the source) say what they define themselves.
	for _, path := range app.CommandFlagPaths() {
		fs, _ := app.CommandFlags(path)
		m := map[string]bool{}
		fs.VisitAll(func(f *flag.Flag) {
			_, isBool := f.Value.(interface{ IsBoolFlag() bool })
			m[f.Name] = !isBool
		})
		flags[path] = m
	}
	return Spec{Paths: paths, Flags: flags}
}

// TestDocLinksResolve: every relative link in README.md and docs/*.md
// names a file that exists, and every #anchor a heading of its file.
func TestDocLinksResolve(t *testing.T) {
	root := repoRoot(t)
	docs := documents(t, root)
	n := 0
	for _, d := range docs {
		n += len(d.Links)
	}
	if n < 20 {
		t.Fatalf("only %d links found: is the Markdown parsed?", n)
	}
	for _, p := range CheckLinks(root, docs) {
		p.File, _ = filepath.Rel(root, p.File)
		t.Error(p)
	}
}

// TestDocCommandsParse: every shell block of the docs parses as shell, and
// every patchbay command in a shell block or a code span is a command the
// usage lists, with flags that command defines.
func TestDocCommandsParse(t *testing.T) {
	root := repoRoot(t)
	spec := cliSpec(t, root)
	docs := documents(t, root)
	fenced, total := 0, 0
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d.Path)
		for _, p := range d.Problems {
			t.Errorf("%s:%d: %s", rel, p.Line, p.Msg)
		}
		for _, c := range d.Commands {
			total++
			if c.Fenced {
				fenced++
			}
			if err := spec.Check(c.Args); err != nil {
				t.Errorf("%s:%d: %v", rel, c.Line, err)
			}
		}
	}
	t.Logf("%d patchbay commands checked, %d of them in shell blocks", total, fenced)
	if fenced < 8 {
		t.Fatalf("only %d patchbay commands found in shell blocks", fenced)
	}
}

// TestConfigurationTableIsPatchbayEnv runs `patchbay env` and wants its
// table, line for line, under "Configuration" in docs/production.md.
func TestConfigurationTableIsPatchbayEnv(t *testing.T) {
	root := repoRoot(t)
	var stdout, stderr bytes.Buffer
	cli := app.CLI{Stdout: &stdout, Stderr: &stderr, Commands: dev.Commands()}
	if code := cli.Run(context.Background(), []string{"env"}); code != 0 {
		t.Fatalf("patchbay env: exit %d: %s", code, stderr.String())
	}
	want := strings.TrimSpace(stdout.String())
	doc, err := os.ReadFile(filepath.Join(root, "docs", "production.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "\n## Configuration\n")
	if !ok {
		t.Fatal("docs/production.md has no Configuration section")
	}
	start := strings.Index(after, "| Variable |")
	if start < 0 {
		t.Fatal("no table in the Configuration section of docs/production.md")
	}
	var table []string
	for _, line := range strings.Split(after[start:], "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		table = append(table, line)
	}
	if got := strings.Join(table, "\n"); got != want {
		t.Errorf("the table in docs/production.md is not what `patchbay env` prints; paste its output:\n%s", want)
	}
}

// TestReadmeIsTheFrontPage: README.md stays under 250 lines, gives
// `go run ./cmd/patchbay dev`, and gives exactly the test command that
// .ci/run runs.
func TestReadmeIsTheFrontPage(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(readme, []byte("\n")); n >= 250 {
		t.Errorf("README.md has %d lines; keep it under 250 and move the rest to docs/", n)
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	ciTest := regexp.MustCompile(`(?m)^go test .*$`).Find(ci)
	if ciTest == nil {
		t.Fatal(".ci/run runs no `go test`")
	}
	d := Parse("README.md", readme)
	var dev, tests bool
	for _, block := range d.Shell {
		for _, line := range strings.Split(block, "\n") {
			dev = dev || strings.TrimSpace(line) == "go run ./cmd/patchbay dev"
			tests = tests || strings.TrimSpace(line) == string(ciTest)
		}
	}
	if !dev {
		t.Error("README.md has no shell block with `go run ./cmd/patchbay dev`")
	}
	if !tests {
		t.Errorf("README.md has no shell block with .ci/run's test command %q", ciTest)
	}
}

// TestCheckerFindsBrokenLinksAndCommands runs the checks on a small tree
// with one of each mistake, so the tests above can fail.
func TestCheckerFindsBrokenLinksAndCommands(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "docs"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "docs", "b.md"), []byte("# B\n\n## How `x.y` → z, twice\n\n## How `x.y` → z, twice\n"), 0o644))
	readme := "# A\n\n" +
		"[ok](docs/b.md#how-xy--z-twice-1) [ok](#a) [web](https://example.com/x#y)\n" +
		"[missing](docs/c.md) [anchor](docs/b.md#nope) [self](#nope) [up](../outside.md)\n\n" +
		"```sh\n" +
		"patchbay dlq list -limit 5 -json\n" +
		"go run ./cmd/patchbay dlq list -limti 5\n" +
		"patchbay dlq show 7   # not in the usage\n" +
		"patchbay sources check f.yaml -source hubspot -sample 'x y.json' \\\n  -no-secrets\n" +
		"```\n"
	must(os.WriteFile(filepath.Join(dir, "README.md"), []byte(readme), 0o644))
	a, err := ParseFile(filepath.Join(dir, "README.md"))
	must(err)
	b, err := ParseFile(filepath.Join(dir, "docs", "b.md"))
	must(err)

	var got []string
	for _, p := range CheckLinks(dir, []*Doc{a, b}) {
		got = append(got, p.Msg)
	}
	for _, want := range []string{`"docs/c.md"`, `"docs/b.md#nope"`, `"#nope"`, `"../outside.md"`} {
		if !containsPrefix(got, "link "+want) {
			t.Errorf("no problem reported for link %s; got %q", want, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("want 4 link problems, got %d: %q", len(got), got)
	}

	spec := Spec{
		Paths: UsagePaths("Usage:\n  patchbay dlq list [-limit N] [-json]\n  patchbay dlq replay SEQ...   replay\n  patchbay sources check FILE [-sample FILE]\n"),
		Flags: map[string]map[string]bool{"dlq list": {"limit": true, "json": false}, "sources check": {"sample": true, "source": true, "no-secrets": false}},
	}
	var errs []error
	for _, c := range a.Commands {
		errs = append(errs, spec.Check(c.Args))
	}
	if len(errs) != 4 {
		t.Fatalf("want 4 commands, got %d: %+v", len(a.Commands), a.Commands)
	}
	if errs[0] != nil || errs[3] != nil {
		t.Errorf("valid commands refused: %v, %v", errs[0], errs[3])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "-limti") {
		t.Errorf("misspelt flag: %v", errs[1])
	}
	if !errors.Is(errs[2], ErrUnknownCommand) {
		t.Errorf("unknown command: %v", errs[2])
	}
	if a.Commands[3].Line != 10 {
		t.Errorf("the continued command is on line %d, want 10", a.Commands[3].Line)
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestSlug follows GitHub's anchors for headings of these docs.
func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Sources: webhooks as CRMs send them":            "sources-webhooks-as-crms-send-them",
		"HubSpot contact.propertyChange → Skipcall":      "hubspot-contactpropertychange--skipcall",
		"A CRM's own JSON → RevyOps, signed like GitHub": "a-crms-own-json--revyops-signed-like-github",
		"Every promise, and the test that guards it":     "every-promise-and-the-test-that-guards-it",
		"Performance: the load harness":                  "performance-the-load-harness",
		"snake_case and Ünïcode":                         "snake_case-and-ünïcode",
	} {
		if got := Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUsagePaths reads both forms of alternatives.
func TestUsagePaths(t *testing.T) {
	got := UsagePaths(`Usage:
  patchbay dev                      run everything
  patchbay dlq list|show|replay [-json]
  patchbay contacts map import FILE.csv | list | get SOURCE TARGET ID
  patchbay sources check FILE [-sample FILE]
`)
	var s []string
	for _, p := range got {
		s = append(s, strings.Join(p, " "))
	}
	want := "dev,dlq list,dlq show,dlq replay,contacts map import,contacts map list,contacts map get,sources check"
	if strings.Join(s, ",") != want {
		t.Errorf("paths %q, want %q", strings.Join(s, ","), want)
	}
}
