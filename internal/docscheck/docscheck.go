// Package docscheck checks patchbay's Markdown documentation against the
// repository and the command line: every relative link names a file that
// exists, every #anchor names a heading (with GitHub's slug rules), and
// every `patchbay …` command shown in a shell block names a command the
// CLI's usage lists, with flags that command defines.
package docscheck

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/yuin/goldmark"
	mdast "github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"
	"mvdan.cc/sh/v3/syntax"
)

// Problem is one thing wrong in a document, at a line.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Link is a link's destination as written, and the line it is on.
type Link struct {
	Dest string
	Line int
}

// Command is a patchbay command line shown in a document: its arguments
// after the program name (`patchbay` or `go run ./cmd/patchbay`).
type Command struct {
	Args []string
	Line int
	// Fenced is true for a command in a fenced shell block, false for one
	// in an inline code span.
	Fenced bool
}

// Doc is one parsed Markdown file.
type Doc struct {
	Path     string
	Anchors  map[string]bool
	Links    []Link
	Commands []Command
	// Shell holds the text of every fenced shell block.
	Shell []string
	// Problems found while parsing (a shell block that is not shell).
	Problems []Problem
}

var md = goldmark.New(goldmark.WithExtensions(extension.GFM))

// shellLangs are the info strings of fenced blocks read as shell.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true}

// ParseFile reads and parses the Markdown file at path.
func ParseFile(path string) (*Doc, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("docscheck: %w", err)
	}
	return Parse(path, src), nil
}

// Parse parses src, the Markdown file at path.
func Parse(path string, src []byte) *Doc {
	d := &Doc{Path: path, Anchors: map[string]bool{}}
	lineOf := func(pos int) int {
		if pos < 0 {
			return 0
		}
		return bytes.Count(src[:min(pos, len(src))], []byte("\n")) + 1
	}
	seen := map[string]int{}
	root := md.Parser().Parse(text.NewReader(src))
	_ = mdast.Walk(root, func(n mdast.Node, entering bool) (mdast.WalkStatus, error) {
		if !entering {
			return mdast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *mdast.Heading:
			s := Slug(inlineText(n, src))
			if k, dup := seen[s]; dup {
				seen[s] = k + 1
				s = s + "-" + strconv.Itoa(k+1)
			} else {
				seen[s] = 0
			}
			d.Anchors[s] = true
		case *mdast.Link:
			d.Links = append(d.Links, Link{Dest: string(n.Destination), Line: lineOf(nodePos(n))})
		case *mdast.Image:
			d.Links = append(d.Links, Link{Dest: string(n.Destination), Line: lineOf(nodePos(n))})
		case *mdast.FencedCodeBlock:
			if !shellLangs[string(n.Language(src))] {
				return mdast.WalkSkipChildren, nil
			}
			var b strings.Builder
			for i := 0; i < n.Lines().Len(); i++ {
				seg := n.Lines().At(i)
				b.Write(seg.Value(src))
			}
			first := 0
			if n.Lines().Len() > 0 {
				first = lineOf(n.Lines().At(0).Start)
			}
			d.Shell = append(d.Shell, b.String())
			cmds, err := shellCommands(b.String(), first, true)
			if err != nil {
				d.Problems = append(d.Problems, Problem{path, first, "shell block does not parse: " + err.Error()})
			}
			d.Commands = append(d.Commands, cmds...)
			return mdast.WalkSkipChildren, nil
		case *mdast.CodeSpan:
			s := inlineText(n, src)
			if strings.HasPrefix(s, "patchbay ") || strings.HasPrefix(s, "go run ./cmd/patchbay ") {
				line := lineOf(nodePos(n))
				cmds, err := shellCommands(s, line, false)
				if err != nil {
					d.Problems = append(d.Problems, Problem{path, line, fmt.Sprintf("code span %q does not parse as shell: %v", s, err)})
				}
				d.Commands = append(d.Commands, cmds...)
			}
			return mdast.WalkSkipChildren, nil
		}
		return mdast.WalkContinue, nil
	})
	return d
}

// nodePos is the offset of n in the source, or of its first text, or -1.
func nodePos(n mdast.Node) int {
	if p := n.Pos(); p >= 0 {
		return p
	}
	for c := n.FirstChild(); c != nil; c = c.FirstChild() {
		if t, ok := c.(*mdast.Text); ok {
			return t.Segment.Start
		}
	}
	return -1
}

// inlineText is the text GitHub renders for n's inline content: text,
// code spans' content, links' text; no markup.
func inlineText(n mdast.Node, src []byte) string {
	var b strings.Builder
	_ = mdast.Walk(n, func(c mdast.Node, entering bool) (mdast.WalkStatus, error) {
		if !entering {
			return mdast.WalkContinue, nil
		}
		switch c := c.(type) {
		case *mdast.Text:
			b.Write(c.Segment.Value(src))
			if c.SoftLineBreak() || c.HardLineBreak() {
				b.WriteByte(' ')
			}
		case *mdast.String:
			b.Write(c.Value)
		}
		return mdast.WalkContinue, nil
	})
	return strings.TrimSpace(b.String())
}

// Slug returns the anchor GitHub gives a heading whose rendered text is s:
// lower case, every character but letters, digits, marks, '-' and '_'
// dropped, each space a '-'. (A repeated slug gets -1, -2, … in the order
// of the headings; Parse does that.)
func Slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsNumber(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// shellCommands parses script as shell and returns its patchbay commands;
// line is the document line of the script's first line.
func shellCommands(script string, line int, fenced bool) ([]Command, error) {
	f, err := syntax.NewParser().Parse(strings.NewReader(script), "")
	if err != nil {
		return nil, err
	}
	var cmds []Command
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		words := make([]string, len(call.Args))
		for i, w := range call.Args {
			words[i] = wordText(w)
		}
		var args []string
		switch {
		case words[0] == "patchbay" || words[0] == "./patchbay":
			args = words[1:]
		case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/patchbay":
			args = words[3:]
		default:
			return true
		}
		cmds = append(cmds, Command{Args: args, Line: line + int(call.Pos().Line()) - 1, Fenced: fenced})
		return true
	})
	return cmds, nil
}

// wordText is a shell word as the command receives it, quotes removed;
// an expansion ($VAR, $(cmd)) stands as "$".
func wordText(w *syntax.Word) string {
	var b strings.Builder
	var parts func([]syntax.WordPart)
	parts = func(ps []syntax.WordPart) {
		for _, p := range ps {
			switch p := p.(type) {
			case *syntax.Lit:
				b.WriteString(p.Value)
			case *syntax.SglQuoted:
				b.WriteString(p.Value)
			case *syntax.DblQuoted:
				parts(p.Parts)
			default:
				b.WriteString("$")
			}
		}
	}
	parts(w.Parts)
	return b.String()
}

// CheckLinks checks every relative link of docs: the file or directory it
// names exists inside root, and its #anchor, if any, is a heading of the
// Markdown file it names (or of the document itself).
func CheckLinks(root string, docs []*Doc) []Problem {
	var problems []Problem
	parsed := map[string]*Doc{}
	for _, d := range docs {
		if abs, err := filepath.Abs(d.Path); err == nil {
			parsed[abs] = d
		}
	}
	rootAbs, err := filepath.Abs(root)
	if err != nil {
		return []Problem{{root, 0, err.Error()}}
	}
	for _, d := range docs {
		for _, l := range d.Links {
			bad := func(format string, a ...any) {
				problems = append(problems, Problem{d.Path, l.Line, fmt.Sprintf("link %q: ", l.Dest) + fmt.Sprintf(format, a...)})
			}
			u, err := url.Parse(l.Dest)
			if err != nil {
				bad("%v", err)
				continue
			}
			if u.Scheme != "" || u.Host != "" || strings.HasPrefix(l.Dest, "//") {
				continue // absolute: not checked here
			}
			target, _ := filepath.Abs(d.Path)
			if u.Path != "" {
				if strings.HasPrefix(u.Path, "/") {
					bad("absolute path; use a path relative to the document")
					continue
				}
				target = filepath.Join(filepath.Dir(target), filepath.FromSlash(u.Path))
				if rel, err := filepath.Rel(rootAbs, target); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
					bad("outside the repository")
					continue
				}
				if _, err := os.Stat(target); err != nil {
					bad("%s does not exist", filepath.ToSlash(mustRel(rootAbs, target)))
					continue
				}
			}
			if u.Fragment == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				continue // anchors into code files (#L10) are GitHub's, not headings
			}
			td := parsed[target]
			if td == nil {
				if td, err = ParseFile(target); err != nil {
					bad("%v", err)
					continue
				}
				parsed[target] = td
			}
			if !td.Anchors[u.Fragment] {
				bad("no heading with anchor #%s in %s (anchors: %s)", u.Fragment, filepath.ToSlash(mustRel(rootAbs, target)), strings.Join(sortedKeys(td.Anchors), " "))
			}
		}
	}
	return problems
}

func mustRel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Spec is what the command line accepts: the command paths its usage
// lists ("dlq list", "contacts map import") and, per path, the flags the
// code defines for it (true when the flag takes a value).
type Spec struct {
	Paths [][]string
	Flags map[string]map[string]bool
}

var (
	commandWord = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	usageSplit  = regexp.MustCompile(`\s{2,}`)
)

// UsagePaths reads the command paths from a usage text whose command lines
// are "  patchbay WORD... [args]   description". Alternatives are read in
// two forms: "dlq list|show|replay" and "map import FILE | list | get …"
// (each alternative replaces the last word of the path).
func UsagePaths(usage string) [][]string {
	var paths [][]string
	add := func(p []string) {
		for _, q := range paths {
			if slices.Equal(p, q) {
				return
			}
		}
		paths = append(paths, slices.Clone(p))
	}
	for _, line := range strings.Split(usage, "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "patchbay ")
		if !ok {
			continue
		}
		rest = usageSplit.Split(rest, 2)[0]
		alts := strings.Split(rest, " | ")
		var path []string
		for i, alt := range alts {
			words := strings.Fields(alt)
			if i > 0 {
				if len(path) == 0 || len(words) == 0 || !commandWord.MatchString(words[0]) {
					continue
				}
				p := append(slices.Clone(path[:len(path)-1]), words[0])
				add(p)
				continue
			}
			for _, w := range words {
				if strings.Contains(w, "|") {
					opts := strings.Split(w, "|")
					if !allMatch(opts) {
						break
					}
					for _, o := range opts {
						add(append(slices.Clone(path), o))
					}
					path = nil // the alternatives are the paths
					break
				}
				if !commandWord.MatchString(w) {
					break
				}
				path = append(path, w)
			}
			if len(path) > 0 {
				add(path)
			}
		}
	}
	return paths
}

func allMatch(words []string) bool {
	for _, w := range words {
		if !commandWord.MatchString(w) {
			return false
		}
	}
	return len(words) > 0
}

// FlagsFromSource finds, in the non-test Go files under dirs, every
// flag.NewFlagSet with a literal name ("dlq list") and the flags defined
// on it in the same function (fs.String("json", …), fs.IntVar(&n, "limit",
// …), …). The result maps the set's name to its flags, true when a flag
// takes a value (everything but Bool, BoolVar and BoolFunc).
func FlagsFromSource(dirs ...string) (map[string]map[string]bool, error) {
	sets := map[string]map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			for _, decl := range f.Decls {
				if fn, ok := decl.(*ast.FuncDecl); ok && fn.Body != nil {
					flagsInBody(fn.Body, sets)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("docscheck: reading flags: %w", err)
		}
	}
	return sets, nil
}

func flagsInBody(body *ast.BlockStmt, sets map[string]map[string]bool) {
	vars := map[string]string{} // variable -> set name
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, rhs := range n.Rhs {
				if i >= len(n.Lhs) {
					break
				}
				call, ok := rhs.(*ast.CallExpr)
				if !ok || !isSel(call.Fun, "flag", "NewFlagSet") || len(call.Args) == 0 {
					continue
				}
				name, ok := stringLit(call.Args[0])
				id, isID := n.Lhs[i].(*ast.Ident)
				if !ok || !isID {
					continue
				}
				vars[id.Name] = name
				if sets[name] == nil {
					sets[name] = map[string]bool{}
				}
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			id, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			set, ok := vars[id.Name]
			if !ok {
				return true
			}
			m := sel.Sel.Name
			arg := 0
			switch {
			case m == "Var" || m == "TextVar" || strings.HasSuffix(m, "Var"):
				arg = 1
			case m == "Func" || m == "BoolFunc" || slices.Contains([]string{"String", "Int", "Int64", "Uint", "Uint64", "Bool", "Duration", "Float64"}, m):
				arg = 0
			default:
				return true
			}
			if len(n.Args) <= arg {
				return true
			}
			if name, ok := stringLit(n.Args[arg]); ok {
				sets[set][name] = !(m == "Bool" || m == "BoolVar" || m == "BoolFunc")
			}
		}
		return true
	})
}

func isSel(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// ErrUnknownCommand is returned by Check for a command the usage does not list.
var ErrUnknownCommand = errors.New("not a command the usage lists")

// Check checks one command line (without the program name): its leading
// words must be a command path of the usage, and every flag after them
// one that path's flag set defines.
func (s Spec) Check(args []string) error {
	var path []string
	for _, p := range s.Paths {
		if len(p) > len(path) && len(p) <= len(args) && slices.Equal(p, args[:len(p)]) {
			path = p
		}
	}
	if path == nil {
		return fmt.Errorf("patchbay %s: %w", strings.Join(args, " "), ErrUnknownCommand)
	}
	name := strings.Join(path, " ")
	flags := s.Flags[name]
	rest := args[len(path):]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue // a positional argument
		}
		f := strings.TrimLeft(a, "-")
		f, value, hasValue := strings.Cut(f, "=")
		takes, ok := flags[f]
		if !ok {
			return fmt.Errorf("patchbay %s: flag -%s is not defined (defined: %s)", name, f, flagList(flags))
		}
		if takes && !hasValue {
			if i+1 >= len(rest) {
				return fmt.Errorf("patchbay %s: flag -%s needs a value", name, f)
			}
			i++
		}
		_ = value
	}
	return nil
}

func flagList(flags map[string]bool) string {
	if len(flags) == 0 {
		return "none"
	}
	var names []string
	for k := range flags {
		names = append(names, "-"+k)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}
