package sources_test

import (
	"encoding/base64"
	"net/http"
	"strconv"
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
