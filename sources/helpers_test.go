package sources_test

import (
	"errors"
	"os"
	"testing"

	"github.com/patchbay/patchbay/sources"
)

// Secrets of the test sources (testdata/sources.yaml).
const (
	hubspotSecret = "hubspot-client-secret-for-tests"
	githubSecret  = "It's a Secret to Everybody"
	swSecret      = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	busToken      = "bus-token-0123456789abcdef"
)

// testEnv serves the test secrets; files come from the map too.
func testEnv(extra map[string]string) sources.Env {
	vals := map[string]string{
		"HUBSPOT_CLIENT_SECRET":       hubspotSecret,
		"CRM_WEBHOOK_SECRET":          "crm-new-secret",
		"CRM_WEBHOOK_SECRET_PREVIOUS": githubSecret,
		"CRM_SW_SECRET":               swSecret,
		"BUS_TOKEN":                   busToken,
	}
	for k, v := range extra {
		vals[k] = v
	}
	return sources.Env{
		LookupEnv: func(k string) (string, bool) { v, ok := vals[k]; return v, ok },
		ReadFile: func(p string) ([]byte, error) {
			if v, ok := vals["file:"+p]; ok {
				return []byte(v), nil
			}
			return nil, &os.PathError{Op: "open", Path: p, Err: errors.New("no such file or directory")}
		},
	}
}

// loadTestSources compiles testdata/sources.yaml.
func loadTestSources(t testing.TB) *sources.Set {
	t.Helper()
	set, err := sources.Load("testdata/sources.yaml", testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func mustSource(t testing.TB, set *sources.Set, name string) *sources.Source {
	t.Helper()
	src, ok := set.Get(name)
	if !ok {
		t.Fatalf("no source %q", name)
	}
	return src
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
