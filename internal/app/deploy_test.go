package app

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// deployEnv returns the PATCHBAY_ variables a deploy file sets, as
// `KEY: "value"` or `KEY: value` lines.
func deployEnv(t *testing.T, path string) (map[string]string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	re := regexp.MustCompile(`(?m)^\s+(PATCHBAY_[A-Z0-9_]+):\s*"?([^"\n]*)"?\s*$`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		env[m[1]] = m[2]
	}
	return env, string(b)
}

// TestKubernetesSampleRefusedAtStart: the sample Kubernetes configuration,
// applied without replacing its Secret, does not start: each service names
// the sample value and exits before it connects to anything.
func TestKubernetesSampleRefusedAtStart(t *testing.T) {
	env, text := deployEnv(t, "../../deploy/k8s/patchbay.yaml")
	if env["PATCHBAY_INGEST_TOKENS"] == "" {
		t.Fatal("the sample no longer sets PATCHBAY_INGEST_TOKENS; update this test")
	}
	for _, cmd := range []string{"ingest", "worker"} {
		t.Run(cmd, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			t.Setenv("PATCHBAY_NATS_URL", "nats://127.0.0.1:1") // nothing listens: reaching Connect would log a retry
			t.Setenv("PATCHBAY_NATS_CONNECT_WAIT", "5s")
			var out strings.Builder
			code := CLI{Stdout: &out, Stderr: &out}.Run(context.Background(), []string{cmd})
			if code != 1 || !strings.Contains(out.String(), "sample value") || strings.Contains(out.String(), "not reachable") {
				t.Fatalf("exit %d, want 1 naming the sample value before connecting:\n%s", code, out.String())
			}
		})
	}
	// pprof stays off, and the admin ports are fenced by NetworkPolicies.
	if strings.Contains(strings.ToLower(env["PATCHBAY_ADMIN_PPROF"]), "true") {
		t.Error("the Kubernetes sample turns pprof on")
	}
	for _, app := range []string{"patchbay-ingest", "patchbay-worker"} {
		re := regexp.MustCompile(`(?s)kind: NetworkPolicy\s+metadata:\s+name: ` + app + `\s+spec:\s+podSelector: \{matchLabels: \{app: ` + app + `\}\}.*?namespaceSelector.*?ports: \[\{port: admin\}\]`)
		if !re.MatchString(text) {
			t.Errorf("no NetworkPolicy limits %s's admin port", app)
		}
	}
}

// TestComposeKeepsAdminOnLoopback: the compose stack leaves the admin
// listeners at their loopback defaults and publishes no admin port.
func TestComposeKeepsAdminOnLoopback(t *testing.T) {
	env, text := deployEnv(t, "../../deploy/compose.yaml")
	for k, v := range env {
		if strings.HasSuffix(k, "_ADMIN_ADDR") && v != "" && !loopback(v) {
			t.Errorf("%s=%q listens beyond loopback", k, v)
		}
		if k == "PATCHBAY_ADMIN_PPROF" {
			t.Errorf("compose sets %s", k)
		}
	}
	for _, port := range []string{"9090", "9091"} {
		if strings.Contains(text, port+":") {
			t.Errorf("compose publishes admin port %s", port)
		}
	}
}
