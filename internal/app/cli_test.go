package app

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestMainRejectsUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	if code := (CLI{Stdout: &out, Stderr: &out}).Run(context.Background(), []string{"frobnicate"}); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if strings.Contains(out.String(), "patchbay dev") {
		t.Fatalf("production usage offers dev mode:\n%s", out.String())
	}
}

// TestNATSCredentialsNeverLogged runs the ingest and dlq commands against
// NATS URLs that carry a password, a token and an unparsable URL with a
// password, none reachable: the retry warnings, the final error and the exit
// line are logged, and no credential appears in them.
func TestNATSCredentialsNeverLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port nothing listens on
	secrets := []string{"pa55-w0rd-secret", "t0ken-secret-42", "br0ken-url-secret"}
	urls := map[string]string{
		"password":   fmt.Sprintf("nats://alice:%s@%s", secrets[0], addr),
		"token":      fmt.Sprintf("nats://%s@%s", secrets[1], addr),
		"list":       fmt.Sprintf("nats://alice:%s@%s,nats://%s@%s", secrets[0], addr, secrets[1], addr),
		"unparsable": fmt.Sprintf("nats://bob:%s@[::1", secrets[2]),
	}
	for name, u := range urls {
		for _, cmd := range [][]string{{"ingest"}, {"dlq", "list"}} {
			t.Run(name+"/"+cmd[0], func(t *testing.T) {
				t.Setenv("PATCHBAY_NATS_URL", u)
				t.Setenv("PATCHBAY_NATS_CONNECT_WAIT", "1500ms")
				t.Setenv("PATCHBAY_INGEST_TOKENS", "9f2c4e1a7b3d5f60819a2b3c4d5e6f70")
				t.Setenv("PATCHBAY_INGEST_ADMIN_ADDR", "")
				t.Setenv("PATCHBAY_LOG_LEVEL", "debug")
				var out bytes.Buffer
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				code := CLI{Stdout: &out, Stderr: &out}.Run(ctx, cmd)
				logs := out.String()
				if code != 1 {
					t.Fatalf("exit code %d, want 1:\n%s", code, logs)
				}
				if !strings.Contains(logs, "exiting") || !strings.Contains(logs, "connect to NATS") {
					t.Fatalf("no exit line with the connect error:\n%s", logs)
				}
				if cmd[0] == "ingest" && strings.Count(logs, "NATS not reachable yet") < 2 {
					t.Fatalf("want the retries logged:\n%s", logs)
				}
				for _, s := range secrets {
					if strings.Contains(logs, s) {
						t.Fatalf("credential %q in the logs:\n%s", s, logs)
					}
				}
			})
		}
	}
}
