package sources_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/patchbay/patchbay/sources"
)

// hubspotVector was computed with openssl, independently of this package:
//
//	cd sources/testdata
//	{ printf '%s' POST https://hooks.example.com/v1/sources/hubspot; cat hubspot.json; printf '%s' 1795600800000; } |
//	  openssl dgst -sha256 -hmac hubspot-client-secret-for-tests -binary | base64
//
// i.e. HubSpot's documented v3 concatenation method + URI + body + timestamp
// (https://developers.hubspot.com/docs/api/webhooks/validating-requests),
// keyed with the app's client secret. hubspot.json is posted byte for byte,
// final newline included.
const (
	hubspotVector    = "9CIEHCQ3n4KkWdq4O+FhZMMlcXhQ2/VxbFMQMxCuztg="
	hubspotTimestamp = "1795600800000" // 2026-11-25T10:00:00Z
)

func hubspotRequest(t *testing.T) *sources.Request {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Host", "10.0.0.7:8080") // what a proxy sends: not what HubSpot signed
	h.Set(sources.HeaderHubSpotSignature, hubspotVector)
	h.Set(sources.HeaderHubSpotTimestamp, hubspotTimestamp)
	return &sources.Request{
		Method: http.MethodPost,
		URI:    "/v1/sources/hubspot",
		Header: h,
		Body:   readFile(t, "testdata/hubspot.json"),
		Now:    time.UnixMilli(1795600800000).Add(90 * time.Second),
	}
}

func TestHubSpotV3Vector(t *testing.T) {
	src := mustSource(t, loadTestSources(t), "hubspot")
	if !src.Authenticate(hubspotRequest(t)) {
		t.Fatal("the independently computed HubSpot v3 signature does not verify")
	}
	cases := []struct {
		name   string
		change func(r *sources.Request)
	}{
		{"tampered body", func(r *sources.Request) { r.Body[len(r.Body)-3] ^= 1 }},
		{"stale timestamp (over 5 minutes)", func(r *sources.Request) { r.Now = time.UnixMilli(1795600800000).Add(5*time.Minute + time.Second) }},
		{"timestamp from the future", func(r *sources.Request) { r.Now = time.UnixMilli(1795600800000).Add(-6 * time.Minute) }},
		{"other timestamp header", func(r *sources.Request) { r.Header.Set(sources.HeaderHubSpotTimestamp, "1795600800001") }},
		{"other path", func(r *sources.Request) { r.URI = "/v1/sources/hubspot2" }},
		{"other method", func(r *sources.Request) { r.Method = http.MethodPut }},
		{"no signature", func(r *sources.Request) { r.Header.Del(sources.HeaderHubSpotSignature) }},
		{"signature not base64", func(r *sources.Request) { r.Header.Set(sources.HeaderHubSpotSignature, "!!!") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := hubspotRequest(t)
			tc.change(r)
			if src.Authenticate(r) {
				t.Fatal("accepted")
			}
		})
	}
	t.Run("wrong secret", func(t *testing.T) {
		set, err := sources.Load("testdata/sources.yaml", testEnv(map[string]string{"HUBSPOT_CLIENT_SECRET": "another-secret"}))
		if err != nil {
			t.Fatal(err)
		}
		if mustSource(t, set, "hubspot").Authenticate(hubspotRequest(t)) {
			t.Fatal("accepted with the wrong secret")
		}
	})
}

func TestHubSpotURIDecoding(t *testing.T) {
	got := sources.HubSpotURI("https://h.example.com/v1/sources/hubspot?a=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B&b=%20")
	want := "https://h.example.com/v1/sources/hubspot?a=:/?@!$'()*,;&b=%20"
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestGitHubVector uses GitHub's published example
// (docs.github.com, "Validating webhook deliveries").
func TestGitHubVector(t *testing.T) {
	src := mustSource(t, loadTestSources(t), "crm")
	req := func(sig, body string) *sources.Request {
		return &sources.Request{Method: "POST", URI: "/v1/sources/crm", Body: []byte(body), Now: time.Now(),
			Header: http.Header{"X-Hub-Signature-256": {sig}}}
	}
	const sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	// The example's secret is the second (previous) secret: rotation works.
	if !src.Authenticate(req(sig, "Hello, World!")) {
		t.Fatal("GitHub's published example does not verify")
	}
	for name, r := range map[string]*sources.Request{
		"tampered body":   req(sig, "Hello, World?"),
		"no prefix":       req(sig[len("sha256="):], "Hello, World!"),
		"short signature": req(sig[:40], "Hello, World!"),
		"no header":       {Method: "POST", Body: []byte("Hello, World!"), Header: http.Header{}},
		"wrong secret":    req("sha256=0000000000000000000000000000000000000000000000000000000000000000", "Hello, World!"),
	} {
		if src.Authenticate(r) {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestStandardWebhooksPerSource signs with the official library.
func TestStandardWebhooksPerSource(t *testing.T) {
	src := mustSource(t, loadTestSources(t), "crm-sw")
	wh, err := standardwebhooks.NewWebhook(swSecret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"contact":{"revyops_id":42,"first_name":"Grace"},"updated_at":"2026-11-25T10:00:00Z"}`)
	signed := func(ts time.Time, b []byte) *sources.Request {
		sig, err := wh.Sign("msg_1", ts, b)
		if err != nil {
			t.Fatal(err)
		}
		return &sources.Request{Method: "POST", Body: b, Now: time.Now(), Header: http.Header{
			"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {strconv.FormatInt(ts.Unix(), 10)}, "Webhook-Signature": {sig},
		}}
	}
	if !src.Authenticate(signed(time.Now(), body)) {
		t.Fatal("a Standard Webhooks signature from the official library does not verify")
	}
	if src.Authenticate(signed(time.Now().Add(-10*time.Minute), body)) {
		t.Fatal("stale timestamp accepted")
	}
	r := signed(time.Now(), body)
	r.Body = append([]byte(nil), body...)
	r.Body[5] ^= 1
	if src.Authenticate(r) {
		t.Fatal("tampered body accepted")
	}
}

func TestBearerAndNone(t *testing.T) {
	src := mustSource(t, loadTestSources(t), "bus")
	ok := &sources.Request{Header: http.Header{"Authorization": {"Bearer " + busToken}}}
	if !src.Authenticate(ok) {
		t.Fatal("bearer token refused")
	}
	for _, h := range []string{"", "Bearer ", "Bearer " + busToken + "x", "Basic " + base64.StdEncoding.EncodeToString([]byte(busToken))} {
		if src.Authenticate(&sources.Request{Header: http.Header{"Authorization": {h}}}) {
			t.Errorf("Authorization %q accepted", h)
		}
	}
	set, err := sources.Parse([]byte("sources:\n  open:\n    auth: {scheme: none}\n    format: cloudevents\n"), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Warnings) != 1 {
		t.Fatalf("scheme none gives warnings %q, want one", set.Warnings)
	}
	if !mustSource(t, set, "open").Authenticate(&sources.Request{Header: http.Header{}}) {
		t.Fatal("scheme none refused a request")
	}
}

// flipLastByte decodes an encoded MAC, flips the lowest bit of its last
// byte and encodes it again. Working on the bytes, not the text, matters
// for base64: the last character before the padding carries two unused
// bits, so flipping its text can leave the MAC unchanged.
func flipLastByte(t *testing.T, enc interface {
	DecodeString(string) ([]byte, error)
	EncodeToString([]byte) string
}, sig string) string {
	t.Helper()
	b, err := enc.DecodeString(sig)
	if err != nil || len(b) == 0 {
		t.Fatalf("not an encoded MAC: %q (%v)", sig, err)
	}
	b[len(b)-1] ^= 1
	return enc.EncodeToString(b)
}

// hexCodec adapts encoding/hex to flipLastByte.
type hexCodec struct{}

func (hexCodec) DecodeString(s string) ([]byte, error) { return hex.DecodeString(s) }
func (hexCodec) EncodeToString(b []byte) string        { return hex.EncodeToString(b) }

// TestSignatureTailChanged: for every signature scheme, a valid signature
// whose last byte alone is changed is refused. Every other refusal test
// changes the body, the secret, the length or the start of the MAC, so a
// check comparing only a prefix of the MAC (or stopping at the first
// bytes) would pass them all; these cases fail it.
func TestSignatureTailChanged(t *testing.T) {
	set := loadTestSources(t)
	shopify, err := sources.Parse([]byte(`sources:
  shop:
    auth: {scheme: hmac-sha256, header: X-Shopify-Hmac-Sha256, encoding: base64, secrets: [{env: SHOP_SECRET}]}
    format: cloudevents
`), testEnv(map[string]string{"SHOP_SECRET": "shop-secret-for-tests"}))
	if err != nil {
		t.Fatal(err)
	}
	swHook, err := standardwebhooks.NewWebhook(swSecret)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		src    *sources.Source
		valid  func() *sources.Request
		tamper func(r *sources.Request)
	}{
		{
			name:  "hubspot-v3 (base64)",
			src:   mustSource(t, set, "hubspot"),
			valid: func() *sources.Request { return hubspotRequest(t) },
			tamper: func(r *sources.Request) {
				r.Header.Set(sources.HeaderHubSpotSignature, flipLastByte(t, base64.StdEncoding, r.Header.Get(sources.HeaderHubSpotSignature)))
			},
		},
		{
			name: "hmac-sha256 hex with prefix (GitHub)",
			src:  mustSource(t, set, "crm"),
			valid: func() *sources.Request {
				return &sources.Request{Method: "POST", URI: "/v1/sources/crm", Body: []byte("Hello, World!"), Now: time.Now(),
					Header: http.Header{"X-Hub-Signature-256": {"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}}}
			},
			tamper: func(r *sources.Request) {
				hexSig := strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
				r.Header.Set("X-Hub-Signature-256", "sha256="+flipLastByte(t, hexCodec{}, hexSig))
			},
		},
		{
			name: "hmac-sha256 hex, last character",
			src:  mustSource(t, set, "crm"),
			valid: func() *sources.Request {
				return &sources.Request{Method: "POST", URI: "/v1/sources/crm", Body: []byte("Hello, World!"), Now: time.Now(),
					Header: http.Header{"X-Hub-Signature-256": {"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}}}
			},
			// ...e17 becomes ...e16: the text a sender would mistype.
			tamper: func(r *sources.Request) {
				s := r.Header.Get("X-Hub-Signature-256")
				r.Header.Set("X-Hub-Signature-256", s[:len(s)-1]+"6")
			},
		},
		{
			name: "hmac-sha256 base64 (Shopify)",
			src:  mustSource(t, shopify, "shop"),
			valid: func() *sources.Request {
				body := []byte(`{"specversion":"1.0"}`)
				m := hmac.New(sha256.New, []byte("shop-secret-for-tests"))
				m.Write(body)
				return &sources.Request{Method: "POST", URI: "/v1/sources/shop", Body: body, Now: time.Now(),
					Header: http.Header{"X-Shopify-Hmac-Sha256": {base64.StdEncoding.EncodeToString(m.Sum(nil))}}}
			},
			tamper: func(r *sources.Request) {
				r.Header.Set("X-Shopify-Hmac-Sha256", flipLastByte(t, base64.StdEncoding, r.Header.Get("X-Shopify-Hmac-Sha256")))
			},
		},
		{
			name: "standard-webhooks",
			src:  mustSource(t, set, "crm-sw"),
			valid: func() *sources.Request {
				body := []byte(`{"contact":{"revyops_id":42,"first_name":"Grace"},"updated_at":"2026-11-25T10:00:00Z"}`)
				now := time.Now()
				sig, err := swHook.Sign("msg_1", now, body)
				if err != nil {
					t.Fatal(err)
				}
				return &sources.Request{Method: "POST", Body: body, Now: now, Header: http.Header{
					"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {strconv.FormatInt(now.Unix(), 10)}, "Webhook-Signature": {sig}}}
			},
			tamper: func(r *sources.Request) {
				version, sig, ok := strings.Cut(r.Header.Get("Webhook-Signature"), ",")
				if !ok {
					t.Fatalf("signature %q is not v1,<base64>", r.Header.Get("Webhook-Signature"))
				}
				r.Header.Set("Webhook-Signature", version+","+flipLastByte(t, base64.StdEncoding, sig))
			},
		},
		{
			name: "bearer, last character of the token",
			src:  mustSource(t, set, "bus"),
			valid: func() *sources.Request {
				return &sources.Request{Header: http.Header{"Authorization": {"Bearer " + busToken}}}
			},
			tamper: func(r *sources.Request) {
				tok := r.Header.Get("Authorization")
				r.Header.Set("Authorization", tok[:len(tok)-1]+string(tok[len(tok)-1]^1))
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.src.Authenticate(tc.valid()) {
				t.Fatal("the valid signature does not verify")
			}
			r := tc.valid()
			before := fmt.Sprint(r.Header)
			tc.tamper(r)
			if fmt.Sprint(r.Header) == before {
				t.Fatal("the tamper changed nothing")
			}
			if tc.src.Authenticate(r) {
				t.Fatalf("accepted with only the tail of the signature changed: %v", r.Header)
			}
		})
	}
}
