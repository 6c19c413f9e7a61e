package dev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/patchbay/patchbay/internal/app"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/internal/proc"
)

// runningDev is a 'patchbay dev' running in the test's process.
type runningDev struct {
	cfg     DevConfig
	natsURL string
}

// startDev runs dev mode in-process on free loopback ports until the
// test ends, and waits until ingest is ready.
func startDev(t *testing.T) runningDev {
	t.Helper()
	for _, k := range []string{"PATCHBAY_NATS_URL", "PATCHBAY_INGEST_TOKENS"} {
		t.Setenv(k, "")
	}
	dev := DevConfig{}
	if err := envconfig.Process("patchbay_dev", &dev); err != nil {
		t.Fatal(err)
	}
	cfg, err := app.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	free := func() string {
		a, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	dev.DataDir = t.TempDir()
	natsAddr := free()
	_, port, _ := net.SplitHostPort(natsAddr)
	fmt.Sscan(port, &dev.NATSPort)
	dev.IngestAddr, dev.RevyOpsAddr, dev.SkipcallAddr, dev.AdminAddr = free(), free(), free(), free()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunDev(ctx, pbtest.Logger(t), dev, cfg.Worker, cfg.Ingest) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunDev: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("dev mode did not stop within 30s of cancellation")
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := proc.WaitHTTP(wctx, "http://"+dev.IngestAddr+"/readyz", 200); err != nil {
		t.Fatal(err)
	}
	return runningDev{cfg: dev, natsURL: "nats://" + natsAddr}
}

// cli runs the patchbay command line in-process and returns its exit code
// and output.
func cli(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := app.CLI{Stdout: &out, Stderr: &out, Commands: Commands()}.Run(ctx, args)
	return code, out.String()
}

// post sends one event to dev's ingest.
func (d runningDev) post(t *testing.T, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+d.cfg.IngestAddr+"/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+d.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
}

// status runs 'patchbay status -json'.
func status(t *testing.T) app.StatusReport {
	t.Helper()
	code, out := cli(t, "status", "-json")
	if code != 0 {
		t.Fatalf("status -json: exit %d\n%s", code, out)
	}
	var r app.StatusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	return r
}

func targetOf(r app.StatusReport, name string) app.TargetStatus {
	for _, t := range r.Targets {
		if t.Target == name {
			return t
		}
	}
	return app.TargetStatus{}
}

// TestStatusBesideDevShowsAPauseByHandAndTheLag: beside a running
// 'patchbay dev', an operator pauses Skipcall from the command line;
// events sent meanwhile wait (nothing reaches the sandbox, nothing is
// dead-lettered), and 'patchbay status' shows who paused it, when and
// why, and the events waiting as the consumer's lag. The admin API pauses
// and resumes the other target the same way. After the resume every
// event is applied. Every command and flag status prints is one the
// usage lists.
func TestStatusBesideDevShowsAPauseByHandAndTheLag(t *testing.T) {
	d := startDev(t)
	t.Setenv("PATCHBAY_NATS_URL", d.natsURL)
	pbtest.Eventually(t, 30*time.Second, "both targets running", func() bool {
		r := status(t)
		return targetOf(r, "skipcall").State == "running" && targetOf(r, "revyops").State == "running"
	})

	before := time.Now().UTC().Truncate(time.Second)
	if code, out := cli(t, "targets", "pause", "skipcall", "-by", "alice@ops", "-reason", "provider maintenance"); code != 0 || !strings.Contains(out, "paused skipcall") {
		t.Fatalf("targets pause: exit %d\n%s", code, out)
	}
	const n = 5
	contacts := make([]string, n)
	for i := range contacts {
		contacts[i] = fmt.Sprintf("0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b%02d", i)
		d.post(t, fmt.Sprintf(`{"id":"evt-pause-%d","target":"skipcall","contact_id":%q,"occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":"Ada"}}`, i, contacts[i]))
	}
	var r app.StatusReport
	pbtest.Eventually(t, 20*time.Second, "the events counted as the consumer's lag", func() bool {
		r = status(t)
		sk := targetOf(r, "skipcall")
		return sk.Pending+uint64(sk.AckPending) == n
	})
	sk := targetOf(r, "skipcall")
	if sk.State != "paused" || len(sk.Budgets) != 1 || sk.Budgets[0].By != "alice@ops" || sk.Budgets[0].Since.Before(before) ||
		!strings.HasPrefix(sk.Detail, "paused by hand by alice@ops at ") || !strings.HasSuffix(sk.Detail, ": provider maintenance") {
		t.Fatalf("skipcall's status: %+v", sk)
	}
	code, table := cli(t, "status")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, table)
	}
	t.Logf("patchbay status beside patchbay dev:\n%s", table)
	row := regexp.MustCompile(`(?m)^skipcall\s+(\d+)\s+(\d+)\s+\d+\s+paused by hand by alice@ops at (\S+): provider maintenance$`).FindStringSubmatch(table)
	if row == nil {
		t.Fatalf("no skipcall row with the pause in:\n%s", table)
	}
	var pending, ack int
	fmt.Sscan(row[1], &pending)
	fmt.Sscan(row[2], &ack)
	if pending+ack != n {
		t.Fatalf("the table's lag is %d pending + %d ack pending, want %d events", pending, ack, n)
	}
	if at, err := time.Parse(time.RFC3339, row[3]); err != nil || at.Before(before) {
		t.Fatalf("paused at %q (%v), want a time from %s on", row[3], err, before)
	}
	if !regexp.MustCompile(`(?m)^revyops\s+0\s+0\s+0\s+running$`).MatchString(table) {
		t.Fatalf("revyops is not shown running:\n%s", table)
	}
	checkNamesInUsage(t, table)

	// The admin API pauses and resumes the same way.
	adminPost := func(path, contentType, body string) (int, app.TargetStatus) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+d.cfg.AdminAddr+path, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ts app.TargetStatus
		_ = json.NewDecoder(resp.Body).Decode(&ts)
		return resp.StatusCode, ts
	}
	if code, ts := adminPost("/admin/v1/targets/revyops/pause", "application/json", `{"by":"bob","reason":"window"}`); code != 200 || ts.Detail == "" || !strings.Contains(ts.Detail, "paused by hand by bob") {
		t.Fatalf("admin pause: %d %+v", code, ts)
	}
	if code, _ := adminPost("/admin/v1/targets/revyops/pause", "application/x-www-form-urlencoded", "by=mallory"); code != http.StatusUnsupportedMediaType {
		t.Fatalf("a form post to the admin API: %d, want 415", code)
	}
	if code, _ := adminPost("/admin/v1/targets/nosuch/pause", "", ""); code != http.StatusNotFound {
		t.Fatalf("pause of an unknown target: %d, want 404", code)
	}
	if code, ts := adminPost("/admin/v1/targets/revyops/resume", "", ""); code != 200 || ts.State != "running" {
		t.Fatalf("admin resume: %d %+v", code, ts)
	}

	// Nothing was sent or dead-lettered while paused.
	for _, c := range contacts {
		if contactAt(t, d, c) {
			t.Fatalf("contact %s reached the sandbox during the pause", c)
		}
	}
	if code, out := cli(t, "targets", "resume", "skipcall"); code != 0 || !strings.Contains(out, "resumed skipcall") {
		t.Fatalf("targets resume: exit %d\n%s", code, out)
	}
	pbtest.Eventually(t, 30*time.Second, "every held event applied after the resume", func() bool {
		for _, c := range contacts {
			if !contactAt(t, d, c) {
				return false
			}
		}
		return true
	})
	r = status(t)
	if sk := targetOf(r, "skipcall"); sk.State != "running" || len(r.DeadLetters) != 0 || r.Streams[1].Messages != 0 {
		t.Fatalf("after the resume: skipcall %+v, dead letters %+v, streams %+v", sk, r.DeadLetters, r.Streams)
	}
}

// contactAt reports whether dev's Skipcall sandbox has the contact with
// the first name the test sent.
func contactAt(t *testing.T, d runningDev, id string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+d.cfg.SkipcallAddr+"/v1/contacts/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+DevSkipcallKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && strings.Contains(string(b), `"firstName":"Ada"`)
}

// checkNamesInUsage fails the test when out names a patchbay command or a
// flag of one that the CLI's usage does not list.
func checkNamesInUsage(t *testing.T, out string) {
	t.Helper()
	_, usage := cli(t, "help")
	cmds := regexp.MustCompile(`patchbay ([a-z]+(?: [a-z]+)?)((?: -[a-z]+)*)`).FindAllStringSubmatch(out, -1)
	if len(cmds) == 0 {
		t.Fatalf("no command named in:\n%s", out)
	}
	for _, m := range cmds {
		words := strings.Fields(m[1])
		// The second word is a subcommand when the usage lists it so.
		name := "patchbay " + words[0]
		if len(words) > 1 && strings.Contains(usage, name+" "+words[1]) {
			name += " " + words[1]
		}
		if !strings.Contains(usage, "  "+name) {
			t.Errorf("status names %q, which the usage does not list", name)
		}
		for _, f := range strings.Fields(m[2]) {
			line := usageLine(usage, name)
			if !strings.Contains(line, "["+f) && !strings.Contains(line, " "+f+" ") {
				t.Errorf("status names %s %s, which the usage line %q does not list", name, f, line)
			}
		}
	}
}

// usageLine returns the usage's line for command name.
func usageLine(usage, name string) string {
	for _, l := range strings.Split(usage, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), name) {
			return l
		}
	}
	return ""
}
