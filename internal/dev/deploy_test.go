package dev

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/patchbay/patchbay/internal/app"
)

// knownVariables returns every environment variable the patchbay binary
// reads, as 'patchbay env' lists them.
func knownVariables(t *testing.T) map[string]bool {
	t.Helper()
	var extra []app.EnvSpec
	for _, c := range Commands() {
		extra = append(extra, c.Env...)
	}
	var b bytes.Buffer
	if err := app.PrintEnv(&b, extra...); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| (PATCHBAY_[A-Z0-9_]+) \|`).FindAllStringSubmatch(b.String(), -1) {
		known[m[1]] = true
	}
	if len(known) < 30 {
		t.Fatalf("patchbay env lists %d variables; did its format change?", len(known))
	}
	return known
}

// deployedVariables returns the PATCHBAY_* variables the compose file and
// the Kubernetes manifests set, each with where.
func deployedVariables(t *testing.T) map[string][]string {
	t.Helper()
	set := map[string][]string{}
	note := func(k, where string) {
		if strings.HasPrefix(k, "PATCHBAY_") {
			set[k] = append(set[k], where)
		}
	}
	b, err := os.ReadFile("../../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct{ Environment map[string]string }
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(compose.Services) < 8 {
		t.Fatalf("compose.yaml has %d services", len(compose.Services))
	}
	for name, svc := range compose.Services {
		for k := range svc.Environment {
			note(k, "compose "+name)
		}
	}
	manifests, _ := filepath.Glob("../../deploy/k8s/*.yaml")
	if len(manifests) < 3 {
		t.Fatalf("deploy/k8s has %d manifests", len(manifests))
	}
	for _, m := range manifests {
		f, err := os.Open(m)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var doc struct {
				Kind       string
				Data       map[string]string
				StringData map[string]string `yaml:"stringData"`
				Spec       struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Env []struct{ Name string }
							}
						}
					}
				}
			}
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			where := filepath.Base(m) + " " + doc.Kind
			for k := range doc.Data {
				note(k, where)
			}
			for k := range doc.StringData {
				note(k, where)
			}
			for _, c := range doc.Spec.Template.Spec.Containers {
				for _, e := range c.Env {
					note(e.Name, where)
				}
			}
		}
		f.Close()
	}
	return set
}

// TestDeployFilesSetOnlyKnownVariables: every PATCHBAY_* variable that
// deploy/compose.yaml and the manifests in deploy/k8s set is one patchbay
// reads ('patchbay env' lists it), so a renamed or misspelt variable in a
// deployment does not go unnoticed.
func TestDeployFilesSetOnlyKnownVariables(t *testing.T) {
	known := knownVariables(t)
	set := deployedVariables(t)
	var names []string
	for k := range set {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !known[k] {
			t.Errorf("%s, set in %v, is not a patchbay variable", k, set[k])
		}
	}
	for _, want := range []string{"PATCHBAY_STREAM_REPLICAS", "PATCHBAY_ADMIN_TOKEN", "PATCHBAY_DEV_SKIPCALL_ADDR"} {
		if len(set[want]) == 0 {
			t.Errorf("the deploy files no longer set %s; update this test", want)
		}
	}
	t.Logf("%d variables checked", len(names))
}
