package sources_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/sources"
)

// TestMappingsNeverSeeCredentials guards "credentials in request headers
// are not visible to mapping expressions": a mapping that copies every
// header it can see into the patch (names reached by a computed key, so no
// load-time check applies) finds the ordinary headers and none of the
// credential ones, by name or by value, for each authentication scheme.
func TestMappingsNeverSeeCredentials(t *testing.T) {
	const dump = `{"first_name": headers.map(k, k + "=" + headers[k]).join(";")}`
	secrets := map[string]string{
		"Authorization":          "Bearer " + busToken,
		"Proxy-Authorization":    "Basic cHJveHk6cGFzcw==",
		"Cookie":                 "session=cookie-value-0123",
		"Webhook-Signature":      "v1,c2lnbmF0dXJlLXZhbHVl",
		"X-HubSpot-Signature-v3": "aHVic3BvdC1zaWduYXR1cmU=",
		"X-Shop-Proof":           "shop-proof-value-4567", // the hmac source's own header
		"X-Api-Key":              "api-key-value-89ab",
		"X-Auth-Token":           "auth-token-value-cdef",
	}
	schemes := map[string]string{
		"hmac":     "{scheme: hmac-sha256, header: X-Shop-Proof, secrets: [{env: BUS_TOKEN}]}",
		"bearer":   "{scheme: bearer, secrets: [{env: BUS_TOKEN}]}",
		"sw":       "{scheme: standard-webhooks, secrets: [{env: CRM_SW_SECRET}]}",
		"hubspot":  "{scheme: hubspot-v3, public_url: 'https://hooks.example.com', secrets: [{env: HUBSPOT_CLIENT_SECRET}]}",
		"insecure": "{scheme: none}",
	}
	for name, auth := range schemes {
		t.Run(name, func(t *testing.T) {
			yaml := "sources:\n  s:\n    auth: " + auth + "\n    id: {header: X-Delivery-Id}\n" +
				"    map: {target: revyops, contact_id: item.id, occurred_at: item.t, patch: '" + dump + "'}\n"
			set, err := sources.Parse([]byte(yaml), testEnv(nil))
			if err != nil {
				t.Fatal(err)
			}
			hdr := []string{"X-Delivery-Id", "d-1", "X-Request-Id", "visible-req-1"}
			for k, v := range secrets {
				hdr = append(hdr, k, v)
			}
			src := mustSource(t, set, "s")
			ms, err := src.Map(jsonRequest(`{"id": 7, "t": "2026-11-25T10:00:00Z"}`, hdr...), events.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if err := src.Validate(ms, events.Limits{}); err != nil {
				t.Fatal(err)
			}
			b, _ := ms[0].Event.Marshal()
			seen := string(b)
			if !strings.Contains(seen, "x-request-id=visible-req-1") || !strings.Contains(seen, "x-delivery-id=d-1") {
				t.Fatalf("the mapping lost ordinary headers: %s", seen)
			}
			for k, v := range secrets {
				visible := strings.Contains(seen, strings.ToLower(k)) || strings.Contains(seen, v)
				switch {
				case k == "X-Shop-Proof" && name != "hmac":
					// Only the hmac source authenticates with it.
					if !visible {
						t.Errorf("header %s is withheld from a %s source, which does not use it: %s", k, name, seen)
					}
				case visible:
					t.Errorf("header %s is visible to the mapping: %s", k, seen)
				}
			}
		})
	}
}

// TestMappingNamingACredentialHeaderIsRefused: an expression that reads a
// credential header by name is a configuration error naming the key and
// the header, in each way CEL can name a map key.
func TestMappingNamingACredentialHeaderIsRefused(t *testing.T) {
	cases := []struct{ expr, header string }{
		{`{"first_name": headers.authorization}`, "authorization"},
		{`{"first_name": headers["Cookie"]}`, "cookie"},
		{`{"first_name": headers[?"webhook-signature"].orValue("")}`, "webhook-signature"},
		{`{"first_name": headers.?x_api_token.orValue("")}`, "x_api_token"},
		{`has(headers.authorization) ? {"first_name": "a"} : {}`, "authorization"},
		{`{"first_name": headers["x-shop-proof"]}`, "x-shop-proof"},
	}
	for _, tc := range cases {
		yaml := "sources:\n  s:\n    auth: {scheme: hmac-sha256, header: X-Shop-Proof, secrets: [{env: BUS_TOKEN}]}\n    id: {header: X-Delivery-Id}\n" +
			"    map: {target: revyops, contact_id: item.id, occurred_at: item.t, patch: '" + strings.ReplaceAll(tc.expr, "'", "''") + "'}\n"
		_, err := sources.Parse([]byte(yaml), testEnv(nil))
		var ce *sources.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a config error", tc.expr, err)
			continue
		}
		want := `source "s": map.patch: expression`
		if p := strings.Join(ce.Problems, "\n"); !strings.Contains(p, want) || !strings.Contains(p, "reads header "+tc.header+", which carries credentials") {
			t.Errorf("%s: problems %q lack %q and the header %s", tc.expr, p, want, tc.header)
		}
	}
	// Ordinary headers stay readable by name.
	yaml := "sources:\n  s:\n    auth: {scheme: bearer, secrets: [{env: BUS_TOKEN}]}\n    id: {header: X-Delivery-Id}\n" +
		"    map: {target: revyops, contact_id: item.id, occurred_at: item.t, patch: '{\"first_name\": headers[\"x-request-id\"]}'}\n"
	if _, err := sources.Parse([]byte(yaml), testEnv(nil)); err != nil {
		t.Fatalf("a mapping reading X-Request-Id was refused: %v", err)
	}
}
