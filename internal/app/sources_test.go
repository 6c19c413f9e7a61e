package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/sources"
)

const testSources = "../../sources/testdata/sources.yaml"

func TestSourcesCheckPrintsEvents(t *testing.T) {
	var out bytes.Buffer
	err := runSources([]string{"check", testSources, "-no-secrets", "-source", "hubspot", "-sample", "../../sources/testdata/hubspot.json"}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.Contains(lines[0], "4 source(s) OK: bus, crm, crm-sw, hubspot") {
		t.Fatalf("first line %q", lines[0])
	}
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 events:\n%s", out.String())
	}
	var first struct {
		Item   int `json:"item"`
		Lookup struct {
			SourceID string `json:"source_id"`
		} `json:"contact_lookup"`
		Event map[string]any `json:"event"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &first); err != nil {
		t.Fatal(err)
	}
	patch, _ := first.Event["patch"].(map[string]any)
	if first.Event["id"] != "hubspot:1001" || first.Lookup.SourceID != "123" || patch["firstName"] != "Ada" || first.Event["occurred_at"] != "2026-11-25T10:00:00Z" {
		t.Fatalf("first event %s", lines[1])
	}
}

func TestSourcesCheckRefusesBadSampleAndConfig(t *testing.T) {
	dir := t.TempDir()
	sample := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(sample, []byte(`[{"eventId":1,"occurredAt":1,"subscriptionType":"contact.propertyChange","objectId":1,"propertyName":"email"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := runSources([]string{"check", testSources, "-no-secrets", "-source", "hubspot", "-sample", sample}, &out)
	if err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(out.String(), "item 0: propertyName, propertyValue: map.patch: no such key: propertyValue") {
		t.Fatalf("err %v, output:\n%s", err, out.String())
	}
	bad := filepath.Join(dir, "sources.yaml")
	if err := os.WriteFile(bad, []byte("sources:\n  x:\n    auth: {scheme: hmac-sha256, secrets: [{env: X}]}\n    id: {header: D}\n    map: {target: skipcall, contact_id: item.a, occurred_at: item.b, patch: 'item.'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = runSources([]string{"check", bad, "-no-secrets"}, &out)
	if !errors.Is(err, sources.ErrConfig) || !strings.Contains(err.Error(), `source "x": auth.header: is required`) || !strings.Contains(err.Error(), `source "x": map.patch: expression "item."`) {
		t.Fatalf("got %v", err)
	}
	// Without -no-secrets a missing variable is a mistake.
	err = runSources([]string{"check", bad}, &out)
	if err == nil || !strings.Contains(err.Error(), `auth.secrets[0]: environment variable X is not set`) {
		t.Fatalf("got %v", err)
	}
}

func TestContactsMapCommands(t *testing.T) {
	emb := natstest.Server(t)
	ctx := context.Background()
	js := natstest.Connect(t, emb, "test")
	cm, err := sources.OpenContactMap(ctx, js, sources.DefaultContactsBucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := contactsCommand(ctx, cm, args, &out)
		return out.String(), err
	}
	// A bad row refuses the whole file, naming the line.
	bad := write("bad.csv", "source,target,source_id,provider_id\nhubspot,skipcall,123,0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c\nhubspot,skipcall,456,not-a-uuid\n")
	if _, err := run("import", bad); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad csv: %v", err)
	}
	if out, _ := run("list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("something was stored from a refused file:\n%s", out)
	}
	good := write("good.csv", "hubspot,skipcall,123,0B7E4C6A-1F2D-4E3A-9B8C-7D6E5F4A3B2C\ncrm,revyops,a.b/c d,0042\n")
	if out, err := run("import", good); err != nil || out != "imported 2 mapping(s)\n" {
		t.Fatalf("import: %q %v", out, err)
	}
	out, err := run("list")
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(rows) != 3 || strings.Join(strings.Fields(rows[1]), " ") != "crm revyops a.b/c d 42" ||
		strings.Join(strings.Fields(rows[2]), " ") != "hubspot skipcall 123 0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c" {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := run("get", "crm", "revyops", "a.b/c d"); err != nil || out != "42\n" {
		t.Fatalf("get: %q %v", out, err)
	}
	if _, err := run("delete", "crm", "revyops", "a.b/c d"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("get", "crm", "revyops", "a.b/c d"); !errors.Is(err, sources.ErrUnmapped) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := run("delete", "crm", "revyops", "a.b/c d"); !errors.Is(err, sources.ErrUnmapped) {
		t.Fatalf("delete twice: %v", err)
	}
}
