package app

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
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

// composeServices reads the services of deploy/compose.yaml (anchors and
// merge keys resolved) with their environment.
func composeServices(t *testing.T) map[string]composeService {
	t.Helper()
	b, err := os.ReadFile("../../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]composeService
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Services
}

type composeService struct {
	Environment map[string]string
	Ports       []string
	Entrypoint  []string
	Healthcheck struct{ Test []string }
}

// TestComposeFencesTheAdminListeners: a compose service whose admin
// listener is reachable beyond its container's loopback has an admin
// token, no admin port is published on the host, and pprof stays off.
func TestComposeFencesTheAdminListeners(t *testing.T) {
	services := composeServices(t)
	admins := 0
	for name, svc := range services {
		for k, v := range svc.Environment {
			if strings.HasSuffix(k, "_ADMIN_ADDR") && v != "" && !loopback(v) {
				admins++
				if svc.Environment["PATCHBAY_ADMIN_TOKEN"] == "" {
					t.Errorf("%s: %s=%q listens beyond loopback without PATCHBAY_ADMIN_TOKEN", name, k, v)
				}
			}
			if k == "PATCHBAY_ADMIN_PPROF" {
				t.Errorf("%s sets %s", name, k)
			}
		}
		for k, v := range svc.Environment {
			if !strings.HasSuffix(k, "_ADMIN_ADDR") {
				continue
			}
			for _, p := range svc.Ports {
				if _, port, _ := net.SplitHostPort(v); port != "" && strings.HasSuffix(p, ":"+port) {
					t.Errorf("%s publishes its admin port: %s", name, p)
				}
			}
		}
		if len(svc.Healthcheck.Test) == 0 {
			t.Errorf("%s has no health check", name)
		}
	}
	if admins != 2 {
		t.Errorf("%d services open their admin listener to Prometheus, want ingest and worker", admins)
	}
}
