package sources

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/patchbay/patchbay/redact"
)

// Request is what authentication and mapping read of an HTTP request.
type Request struct {
	Method string
	// URI is the request target as received: escaped path and query.
	URI    string
	Header http.Header
	Body   []byte
	// Now is the time the request is judged at (timestamps' age).
	Now time.Time
}

// verifier authenticates one request. Implementations compare in constant
// time and try every secret, so rotation needs no restart of senders.
type verifier interface {
	verify(r *Request) bool
	scheme() string
}

// Header names of the HubSpot v3 scheme.
const (
	HeaderHubSpotSignature = "X-HubSpot-Signature-v3"
	HeaderHubSpotTimestamp = "X-HubSpot-Request-Timestamp"
)

func compileAuth(c *checker, ac AuthConfig, env Env) verifier {
	secrets := readSecrets(c, ac.Secrets, env)
	needSecrets := func() {
		if len(ac.Secrets) == 0 {
			c.add("auth.secrets", "at least one secret is required for scheme %s", ac.Scheme)
		}
	}
	unused := func(keys ...string) {
		vals := map[string]bool{"header": ac.Header != "", "prefix": ac.Prefix != "", "encoding": ac.Encoding != "",
			"public_url": ac.PublicURL != "", "max_age": ac.MaxAge != 0}
		for _, k := range keys {
			if vals[k] {
				c.add("auth."+k, "not used by scheme %s", ac.Scheme)
			}
		}
	}
	switch ac.Scheme {
	case SchemeStandardWebhooks:
		needSecrets()
		unused("header", "prefix", "encoding", "public_url", "max_age")
		v := &swVerifier{}
		for i, s := range secrets {
			wh, err := standardwebhooks.NewWebhook(s.Reveal())
			if err != nil {
				// The library's error does not contain the secret.
				c.add("auth.secrets["+strconv.Itoa(i)+"]", "not a Standard Webhooks secret (whsec_<base64>): %v", err)
				continue
			}
			v.hooks = append(v.hooks, wh)
		}
		return v
	case SchemeHMAC:
		needSecrets()
		unused("public_url", "max_age")
		v := &hmacVerifier{header: ac.Header, prefix: ac.Prefix, encoding: ac.Encoding, secrets: secrets}
		if v.header == "" {
			c.add("auth.header", "is required for scheme hmac-sha256 (e.g. X-Hub-Signature-256)")
		}
		switch v.encoding {
		case "":
			v.encoding = "hex"
		case "hex", "base64":
		default:
			c.add("auth.encoding", "must be hex or base64, not %q", ac.Encoding)
		}
		return v
	case SchemeHubSpotV3:
		needSecrets()
		unused("header", "prefix", "encoding")
		v := &hubspotVerifier{secrets: secrets, maxAge: ac.MaxAge}
		if v.maxAge == 0 {
			v.maxAge = 5 * time.Minute
		}
		if v.maxAge < 0 {
			c.add("auth.max_age", "must be positive")
		}
		u, err := url.Parse(ac.PublicURL)
		switch {
		case ac.PublicURL == "":
			c.add("auth.public_url", "is required for scheme hubspot-v3: the scheme and host HubSpot calls (e.g. https://hooks.example.com), since the signature covers the URL")
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
			c.add("auth.public_url", "must be an absolute http(s) URL without query, not %q", ac.PublicURL)
		default:
			v.base = strings.TrimSuffix(ac.PublicURL, "/")
		}
		return v
	case SchemeBearer:
		needSecrets()
		unused("header", "prefix", "encoding", "public_url", "max_age")
		v := &bearerVerifier{}
		for _, s := range secrets {
			v.sums = append(v.sums, sha256.Sum256([]byte(s.Reveal())))
		}
		return v
	case SchemeNone:
		if len(ac.Secrets) > 0 {
			c.add("auth.secrets", "not used by scheme none")
		}
		unused("header", "prefix", "encoding", "public_url", "max_age")
		return noneVerifier{}
	case "":
		c.add("auth.scheme", "is required: standard-webhooks, hmac-sha256, hubspot-v3, bearer, or none (explicitly)")
	default:
		c.add("auth.scheme", "must be standard-webhooks, hmac-sha256, hubspot-v3, bearer or none, not %q", ac.Scheme)
	}
	return noneVerifier{}
}

// swVerifier checks Standard Webhooks signatures with the official library
// (which refuses timestamps more than 5 minutes away).
type swVerifier struct{ hooks []*standardwebhooks.Webhook }

func (v *swVerifier) scheme() string { return SchemeStandardWebhooks }

func (v *swVerifier) verify(r *Request) bool {
	if r.Header.Get(standardwebhooks.HeaderWebhookSignature) == "" {
		return false
	}
	ok := false
	for _, wh := range v.hooks {
		if wh.Verify(r.Body, r.Header) == nil {
			ok = true
		}
	}
	return ok
}

// hmacVerifier checks an HMAC-SHA256 of the raw body carried in a header,
// such as GitHub's X-Hub-Signature-256: sha256=<hex>.
type hmacVerifier struct {
	header, prefix, encoding string
	secrets                  []redact.Secret
}

func (v *hmacVerifier) scheme() string { return SchemeHMAC }

func (v *hmacVerifier) verify(r *Request) bool {
	sig, ok := strings.CutPrefix(r.Header.Get(v.header), v.prefix)
	if !ok || sig == "" {
		return false
	}
	var got []byte
	var err error
	if v.encoding == "base64" {
		got, err = base64.StdEncoding.DecodeString(sig)
	} else {
		got, err = hex.DecodeString(sig)
	}
	if err != nil || len(got) != sha256.Size {
		return false
	}
	match := 0
	for _, s := range v.secrets {
		m := hmac.New(sha256.New, []byte(s.Reveal()))
		m.Write(r.Body)
		match |= subtle.ConstantTimeCompare(m.Sum(nil), got)
	}
	return match == 1
}

// hubspotVerifier checks HubSpot's v3 signature: base64 of HMAC-SHA256,
// keyed with the app's client secret, of method + URI + body + timestamp,
// where the URI is the public URL HubSpot called (not the Host header).
type hubspotVerifier struct {
	base    string
	maxAge  time.Duration
	secrets []redact.Secret
}

func (v *hubspotVerifier) scheme() string { return SchemeHubSpotV3 }

func (v *hubspotVerifier) verify(r *Request) bool {
	sig := r.Header.Get(HeaderHubSpotSignature)
	ts := r.Header.Get(HeaderHubSpotTimestamp)
	if sig == "" || ts == "" {
		return false
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	age := r.Now.Sub(time.UnixMilli(ms))
	if age > v.maxAge || age < -v.maxAge {
		return false
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	uri := HubSpotURI(v.base + r.URI)
	match := 0
	for _, s := range v.secrets {
		match |= subtle.ConstantTimeCompare(HubSpotV3(s.Reveal(), r.Method, uri, r.Body, ts), got)
	}
	return match == 1
}

// HubSpotV3 returns the raw HubSpot v3 signature: HMAC-SHA256 keyed with
// secret over method + uri + body + timestamp. Base64 of it is the
// X-HubSpot-Signature-v3 header.
func HubSpotV3(secret, method, uri string, body []byte, timestamp string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(method))
	m.Write([]byte(uri))
	m.Write(body)
	m.Write([]byte(timestamp))
	return m.Sum(nil)
}

// hubspotDecode is the table of escapes HubSpot decodes in the URI before
// signing it.
var hubspotDecode = strings.NewReplacer(
	"%3A", ":", "%2F", "/", "%3F", "?", "%40", "@", "%21", "!", "%24", "$",
	"%27", "'", "%28", "(", "%29", ")", "%2A", "*", "%2C", ",", "%3B", ";",
	"%3a", ":", "%2f", "/", "%3f", "?", "%2a", "*", "%2c", ",", "%3b", ";",
)

// HubSpotURI decodes the URL-encoded characters HubSpot lists for the v3
// signature (: / ? @ ! $ ' ( ) * , ;) in uri.
func HubSpotURI(uri string) string { return hubspotDecode.Replace(uri) }

// bearerVerifier accepts Authorization: Bearer <one of the secrets>.
type bearerVerifier struct{ sums [][32]byte }

func (v *bearerVerifier) scheme() string { return SchemeBearer }

func (v *bearerVerifier) verify(r *Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for _, s := range v.sums {
		match |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	return match == 1
}

// noneVerifier accepts every request; it is only used when configured.
type noneVerifier struct{}

func (noneVerifier) scheme() string       { return SchemeNone }
func (noneVerifier) verify(*Request) bool { return true }
