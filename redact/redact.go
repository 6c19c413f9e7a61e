// Package redact keeps credentials out of logs and errors: a Secret type for
// keys, tokens and signing secrets read from the environment, and the
// redaction of credentials embedded in NATS server URLs.
package redact

import (
	"log/slog"
	"net/url"
	"strings"
)

// Secret is a credential read from the environment (an API key, a bearer
// token, a webhook signing secret). It never prints itself: fmt, slog and
// envconfig's usage output see "[redacted]".
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the secret in %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue redacts the secret in structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts the secret in JSON and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret's value, for the one place that uses it.
func (s Secret) Reveal() string { return string(s) }

// placeholders are values that sample configuration files and documentation
// commonly ship with. Compared after lowering case and dropping '-', '_' and
// spaces.
var placeholders = []string{
	"changeme", "change", "replaceme", "replace", "replacewith", "placeholder", "secret", "password",
	"token", "apikey", "yourtoken", "yoursecret", "yourapikey", "todo", "fixme", "example", "test",
	"default", "admin", "xxx",
}

// Placeholder reports whether s is a sample value that must never be used
// as a credential: a known placeholder ("changeme", "replace-me",
// "replace-with-a-long-random-token", "sk_live_replace_me", "your-token",
// "xxxxxxxx", ...). A random token never matches.
func (s Secret) Placeholder() bool {
	v := strings.NewReplacer("-", "", "_", "", " ", "", ".", "", "<", "", ">", "").Replace(strings.ToLower(string(s)))
	for _, prefix := range []string{"sklive", "sktest", "whsec"} {
		v = strings.TrimPrefix(v, prefix)
	}
	if v == "" {
		return false
	}
	if strings.Trim(v, "x*") == "" {
		return true
	}
	for _, p := range placeholders {
		if v == p {
			return true
		}
	}
	for _, p := range []string{"replacewith", "replaceme", "changeme", "changethis", "placeholder", "yourtoken", "yoursecret", "yourkey", "yourapikey", "insertyour", "putyour"} {
		if strings.Contains(v, p) {
			return true
		}
	}
	return false
}

// masked replaces a password or a token in a URL, as url.URL.Redacted does.
const masked = "xxxxx"

// URLs returns a comma-separated list of server URLs with every password and
// token replaced by "xxxxx": nats://user:secret@host becomes
// nats://user:xxxxx@host and nats://token@host becomes nats://xxxxx@host.
// An entry that does not parse as a URL loses everything before its last '@'.
func URLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = redactURL(p)
	}
	return strings.Join(parts, ",")
}

func redactURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.User == nil && strings.Contains(raw, "@") {
		// Unparsable: keep the scheme and the host part only.
		at := strings.LastIndex(raw, "@")
		if at < 0 {
			return raw
		}
		start := strings.Index(raw, "://")
		if start < 0 || start > at {
			start = 0
		} else {
			start += 3
		}
		return raw[:start] + masked + raw[at:]
	}
	if u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), masked)
	} else {
		u.User = url.User(masked)
	}
	return u.String()
}

// urlSecrets returns the credentials embedded in a URL list: raw userinfo,
// passwords and tokens (a user name alone is a token), longest first.
func urlSecrets(list string) []string {
	var out []string
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		at := strings.LastIndex(raw, "@")
		if at < 0 {
			continue
		}
		start := strings.Index(raw, "://")
		if start < 0 || start > at {
			start = 0
		} else {
			start += 3
		}
		userinfo := raw[start:at]
		out = append(out, userinfo)
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if !hasPass {
			out = append(out, user)
		} else {
			out = append(out, pass)
		}
		for _, v := range []string{user, pass} {
			if d, err := url.PathUnescape(v); err == nil && d != v {
				if hasPass && v == user {
					continue
				}
				out = append(out, d)
			}
		}
	}
	// Longest first, so that a userinfo is replaced before its parts.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j]) > len(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// URLError returns err with every credential of the URL list removed from
// its message; errors.Is and errors.As still see err. It returns nil for a
// nil err.
func URLError(err error, list string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, raw := range strings.Split(list, ",") {
		if raw = strings.TrimSpace(raw); raw != "" {
			msg = strings.ReplaceAll(msg, raw, redactURL(raw))
		}
	}
	for _, s := range urlSecrets(list) {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, masked)
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError is an error whose message had credentials removed.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
