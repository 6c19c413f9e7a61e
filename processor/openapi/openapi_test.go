package openapi_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/patchbay/patchbay/processor/openapi"
)

func TestEmbeddedUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		file string
	}{
		{"revyops", openapi.RevyOps(), "revyops-update-contact.openapi.yaml"},
		{"skipcall", openapi.Skipcall(), "skipcall-update-contact.openapi.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tc.got, want) {
				t.Fatalf("embedded %s differs from the seed file", tc.file)
			}
			tc.got[0] ^= 0xff // callers get a copy
			if again := map[string][]byte{"revyops": openapi.RevyOps(), "skipcall": openapi.Skipcall()}[tc.name]; !bytes.Equal(again, want) {
				t.Fatal("modifying the returned slice changed the embedded document")
			}
		})
	}
}

func TestLoadRevyOpsCompanyID(t *testing.T) {
	doc, err := openapi.LoadRevyOps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := doc.Components.Schemas[openapi.RevyOpsRequestSchema].Value.Properties["company_id"].Value
	for _, tc := range []struct {
		name  string
		value any
		ok    bool
	}{
		{"integer", float64(12), true},
		{"domain string", "acme.com", true},
		{"null", nil, true},
		{"fraction", 1.5, false},
		{"boolean", true, false},
		{"object", map[string]any{"id": float64(1)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.VisitJSON(tc.value)
			if (err == nil) != tc.ok {
				t.Fatalf("VisitJSON(%v) = %v, want ok=%v", tc.value, err, tc.ok)
			}
		})
	}
}

func TestLoadRevyOpsFlatCustomFields(t *testing.T) {
	doc, err := openapi.LoadRevyOps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := doc.Components.Schemas[openapi.RevyOpsResponseSchema].Value.Properties["contact_custom_fields"].Value
	nested := []any{map[string]any{"id": float64(1), "field_name": "tier", "field_value": "gold", "updated_time": "2024-01-01T00:00:00Z"}}
	flat := map[string]any{"tier": "gold"}
	for _, v := range []any{nested, flat} {
		if err := s.VisitJSON(v); err != nil {
			t.Errorf("VisitJSON(%v): %v", v, err)
		}
	}
	if err := s.VisitJSON(map[string]any{"tier": float64(3)}); err == nil {
		t.Error("FLAT value must be a string")
	}
}

func TestLoadSkipcallTextFields(t *testing.T) {
	doc, err := openapi.LoadSkipcall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	props := doc.Components.Schemas[openapi.SkipcallResponseSchema].Value.Properties
	for _, name := range openapi.SkipcallTextFields() {
		t.Run(name, func(t *testing.T) {
			s := props[name].Value
			if !s.Type.Is(openapi3.TypeString) || !s.Nullable {
				t.Fatalf("%s: type %v nullable %v, want nullable string", name, s.Type, s.Nullable)
			}
			if err := s.VisitJSON("x"); err != nil {
				t.Fatalf("string rejected: %v", err)
			}
			if err := s.VisitJSON(nil); err != nil {
				t.Fatalf("null rejected: %v", err)
			}
			if err := s.VisitJSON(map[string]any{}); err == nil {
				t.Fatal("object accepted")
			}
		})
	}
}

func TestLoadIsFreshEachTime(t *testing.T) {
	a, err := openapi.LoadSkipcall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a.Servers = nil
	b, err := openapi.LoadSkipcall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Servers) != 1 || b.Servers[0].URL != "https://api-public.skipcall.app" {
		t.Fatalf("servers = %v", b.Servers)
	}
	if err := b.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The uncorrected Skipcall seed fails validation: the correction is needed.
func TestSkipcallSeedNeedsCorrection(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Skipcall())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err == nil {
		t.Fatal("the raw Skipcall seed validates; LoadSkipcall's correction may be stale")
	}
}
