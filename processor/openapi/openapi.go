// Package openapi embeds the providers' seed OpenAPI documents, byte for byte
// as the providers publish them, and loads them with the corrections their
// prose documentation implies where prose and schema disagree.
//
// RevyOps (revyops-update-contact.openapi.yaml):
//   - request company_id is "an integer ID or a domain string" (the schema
//     says integer only);
//   - with ?structure=FLAT the response's contact_custom_fields is an object
//     keyed by field name (the schema says array only).
//
// Skipcall (skipcall-update-contact.openapi.yaml):
//   - the response's text fields (email, company, city, country, url,
//     linkedinUrl, linkedinSalesUrl, role) are typed object in the schema but
//     are strings in every example: they are corrected to nullable strings.
//
// The Skipcall seed does not validate as published (its string examples
// contradict the object types), so documents are validated only after the
// corrections. Every Load* call parses a fresh document, so callers may
// modify the result.
package openapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

//go:embed revyops-update-contact.openapi.yaml
var revyOpsDoc []byte

//go:embed skipcall-update-contact.openapi.yaml
var skipcallDoc []byte

// RevyOps returns a copy of the embedded, unchanged RevyOps seed document
// (revyops-update-contact.openapi.yaml).
func RevyOps() []byte { return append([]byte(nil), revyOpsDoc...) }

// Skipcall returns a copy of the embedded, unchanged Skipcall seed document
// (skipcall-update-contact.openapi.yaml).
func Skipcall() []byte { return append([]byte(nil), skipcallDoc...) }

// Schema names in the seed documents that the corrections touch.
const (
	// RevyOpsRequestSchema names the RevyOps PATCH body schema.
	RevyOpsRequestSchema = "PatchedContactPatchRequest"
	// RevyOpsResponseSchema names the RevyOps 200 body schema.
	RevyOpsResponseSchema = "ContactPatchResponseV2"
	// SkipcallRequestSchema names the Skipcall PATCH body schema.
	SkipcallRequestSchema = "PublicUpdateContactDto"
	// SkipcallResponseSchema names the Skipcall 200 body schema.
	SkipcallResponseSchema = "PublicContactDto"
)

// SkipcallTextFields are the PublicContactDto properties the seed types as
// object although they hold strings; LoadSkipcall retypes them.
func SkipcallTextFields() []string {
	return []string{"email", "company", "city", "country", "url", "linkedinUrl", "linkedinSalesUrl", "role"}
}

// LoadRevyOps parses the RevyOps document and applies the prose corrections
// (request company_id: integer, or string domain, nullable; FLAT responses
// carry contact_custom_fields as an object), validating the result. It
// returns an error wrapping the parser's or validator's error.
func LoadRevyOps(ctx context.Context) (*openapi3.T, error) {
	doc, err := load(ctx, revyOpsDoc)
	if err != nil {
		return nil, fmt.Errorf("openapi: revyops: %w", err)
	}
	req, err := schema(doc, RevyOpsRequestSchema)
	if err != nil {
		return nil, fmt.Errorf("openapi: revyops: %w", err)
	}
	req.Properties["company_id"] = openapi3.NewSchemaRef("", &openapi3.Schema{
		Description: "Integer company ID, or a domain string that auto-resolves the company (prose correction).",
		Nullable:    true,
		OneOf: openapi3.SchemaRefs{
			openapi3.NewSchemaRef("", openapi3.NewIntegerSchema()),
			openapi3.NewSchemaRef("", openapi3.NewStringSchema()),
		},
	})

	resp, err := schema(doc, RevyOpsResponseSchema)
	if err != nil {
		return nil, fmt.Errorf("openapi: revyops: %w", err)
	}
	nested := resp.Properties["contact_custom_fields"]
	if nested == nil {
		return nil, fmt.Errorf("openapi: revyops: %s has no contact_custom_fields", RevyOpsResponseSchema)
	}
	flat := openapi3.NewObjectSchema().WithAdditionalProperties(openapi3.NewStringSchema())
	resp.Properties["contact_custom_fields"] = openapi3.NewSchemaRef("", &openapi3.Schema{
		Description: "NESTED (default): array of custom fields; FLAT: object keyed by field name (prose correction).",
		OneOf:       openapi3.SchemaRefs{nested, openapi3.NewSchemaRef("", flat)},
	})
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("openapi: revyops: corrected document: %w", err)
	}
	return doc, nil
}

// LoadSkipcall parses the Skipcall document and applies the prose
// corrections (response text fields typed as string, nullable), validating
// the result. It returns an error wrapping the parser's or validator's error.
func LoadSkipcall(ctx context.Context) (*openapi3.T, error) {
	doc, err := load(ctx, skipcallDoc)
	if err != nil {
		return nil, fmt.Errorf("openapi: skipcall: %w", err)
	}
	resp, err := schema(doc, SkipcallResponseSchema)
	if err != nil {
		return nil, fmt.Errorf("openapi: skipcall: %w", err)
	}
	for _, name := range SkipcallTextFields() {
		p := resp.Properties[name]
		if p == nil || p.Value == nil {
			return nil, fmt.Errorf("openapi: skipcall: %s has no property %q", SkipcallResponseSchema, name)
		}
		s := openapi3.NewStringSchema()
		s.Nullable = true
		s.Example = p.Value.Example
		resp.Properties[name] = openapi3.NewSchemaRef("", s)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("openapi: skipcall: corrected document: %w", err)
	}
	return doc, nil
}

func load(ctx context.Context, data []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return doc, nil
}

func schema(doc *openapi3.T, name string) (*openapi3.Schema, error) {
	if doc.Components == nil {
		return nil, errors.New("no components")
	}
	ref := doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("no schema %q", name)
	}
	return ref.Value, nil
}
