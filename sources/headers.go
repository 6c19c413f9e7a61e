package sources

import (
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
)

// Mapping expressions read request headers through the headers variable.
// Headers that carry credentials are withheld from it, so a mapping cannot
// copy a bearer token, a signature or a session cookie into a provider's
// contact, a dead letter or a log line. An expression that names such a
// header is refused when the sources file is loaded; one that reaches it
// by a computed name finds it absent.

// credentialHeaders are withheld whatever the source's scheme (lower case):
// the schemes sources accept, and the usual HTTP credentials.
var credentialHeaders = map[string]bool{
	"authorization":                         true,
	"proxy-authorization":                   true,
	"cookie":                                true,
	"webhook-signature":                     true, // Standard Webhooks
	"x-hubspot-signature":                   true, // HubSpot v1 and v2
	strings.ToLower(HeaderHubSpotSignature): true,
}

// credentialWords withhold a header whose lower-case name contains one of
// them: senders carry API keys and signatures in headers of their own
// naming.
var credentialWords = []string{"auth", "token", "secret", "signature", "password", "api-key", "apikey", "hmac", "cookie", "session"}

// withholds reports whether mappings of s must not see header name (any
// case): a credential header, or the header s's own authentication reads.
func (s *Source) withholds(name string) bool {
	name = strings.ToLower(name)
	if credentialHeaders[name] || name == s.authHeader {
		return true
	}
	for _, w := range credentialWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// mappingHeaders returns the first value of each header of r that s's
// mappings may read, under its lower-case name.
func (s *Source) mappingHeaders(r *Request) map[string]string {
	h := make(map[string]string, len(r.Header))
	for k, vs := range r.Header {
		if len(vs) > 0 && !s.withholds(k) {
			h[strings.ToLower(k)] = vs[0]
		}
	}
	return h
}

// headerRefs returns the header names an expression reads by a literal
// name (headers.x, headers["x"], headers[?"x"], headers.?x, has(headers.x)),
// lower case.
func headerRefs(a *cel.Ast) []string {
	var refs []string
	isHeaders := func(e ast.Expr) bool { return e.Kind() == ast.IdentKind && e.AsIdent() == "headers" }
	ast.PreOrderVisit(a.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.SelectKind:
			if isHeaders(e.AsSelect().Operand()) {
				refs = append(refs, strings.ToLower(e.AsSelect().FieldName()))
			}
		case ast.CallKind:
			c := e.AsCall()
			switch c.FunctionName() {
			case "_[_]", "_[?_]", "_?._":
			default:
				return
			}
			if len(c.Args()) != 2 || !isHeaders(c.Args()[0]) || c.Args()[1].Kind() != ast.LiteralKind {
				return
			}
			if name, ok := c.Args()[1].AsLiteral().Value().(string); ok {
				refs = append(refs, strings.ToLower(name))
			}
		}
	}))
	return refs
}
