package redact

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("s3cr3t-value-123")
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("x", "key", s)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "key", s, "list", []Secret{s})
	fmt.Fprintf(&b, "%v %s %+v %#v %q", s, s, s, s, s)
	fmt.Fprintf(&b, "%v %+v", struct{ K Secret }{s}, []Secret{s})
	if strings.Contains(b.String(), "s3cr3t") {
		t.Fatalf("secret printed: %s", b.String())
	}
	if s.Reveal() != "s3cr3t-value-123" {
		t.Fatal("Reveal lost the value")
	}
}

func TestPlaceholder(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"replace-with-a-long-random-token", true},
		{"changeme", true},
		{"CHANGE_ME", true},
		{"replace-me", true},
		{"sk_live_replace_me", true},
		{"whsec_changeme", true},
		{"your-token-here", true},
		{"xxxxxxxxxxxxxxxx", true},
		{"<token>", true},
		{"secret", true},
		{"dev-token-not-a-secret", false}, // dev mode's documented token
		{"", false},
		{"3f9c2b7e8a1d4c6b9e0f2a3b4c5d6e7f", false},
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", false},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},
	} {
		if got := Secret(tc.v).Placeholder(); got != tc.want {
			t.Errorf("Placeholder(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://nats-1:4222", "nats://nats-1:4222"},
		{"nats://user:s3cret@nats-1:4222", "nats://user:xxxxx@nats-1:4222"},
		{"nats://t0ken-abc@nats-1:4222", "nats://xxxxx@nats-1:4222"},
		{"nats://a:pw1@h1:4222,nats://tok2@h2:4222", "nats://a:xxxxx@h1:4222,nats://xxxxx@h2:4222"},
		{"nats://user:s3cret@[::1", "nats://xxxxx@[::1"},
		{"user:s3cret@host:4222", "xxxxx@host:4222"},
		{"tls://us%3Aer:p%40ss@h:4222", "tls://us%3Aer:xxxxx@h:4222"},
	} {
		if got := URLs(tc.in); got != tc.want {
			t.Errorf("URLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestURLErrorRemovesEveryCredential(t *testing.T) {
	list := "nats://alice:pa55-word@h1:4222, nats://t0k3n-zzz@h2:4222,nats://bob:p%40ss-enc@h3:4222,nats://eve:br0ken-pw@[::1"
	sentinel := errors.New("no servers")
	//lint:ignore SA1007 the test needs the parse error of an invalid URL, which quotes it
	_, perr := url.Parse("nats://eve:br0ken-pw@[::1")
	inner := fmt.Errorf("dial %s then %s then %s: %w; %v; decoded p@ss-enc", "nats://alice:pa55-word@h1:4222", "t0k3n-zzz", "alice:pa55-word", sentinel, perr)
	err := fmt.Errorf("connect: %w", URLError(inner, list))
	for _, s := range []string{"pa55-word", "t0k3n-zzz", "p%40ss-enc", "p@ss-enc", "br0ken-pw"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("%q left in %q", s, err)
		}
	}
	if !errors.Is(err, sentinel) {
		t.Error("errors.Is lost the wrapped error")
	}
	if !strings.Contains(err.Error(), "nats://alice:xxxxx@h1:4222") || !strings.Contains(err.Error(), "no servers") {
		t.Errorf("message lost its useful parts: %q", err)
	}
	if URLError(nil, list) != nil {
		t.Error("nil error became non-nil")
	}
	plain := errors.New("x")
	if URLError(plain, "nats://h:4222") != plain {
		t.Error("an error without credentials should be returned as is")
	}
}
