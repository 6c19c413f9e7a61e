package sources

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"github.com/tidwall/gjson"
)

// costLimit bounds the work of one expression on one item, so a hostile
// payload cannot make a mapping run long.
const costLimit = 100_000

// mapping is a compiled MapConfig.
type mapping struct {
	target, structure string
	filter            *expr
	contactID         *expr
	occurredAt        *expr // nil: CloudEvents time
	patch             *expr
}

// expr is one compiled CEL program and the item fields it reads.
type expr struct {
	key  string // map.<key>, for errors
	prg  cel.Program
	refs []string // item fields read, e.g. "propertyValue"
}

// newCELEnv declares the variables expressions see.
func newCELEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("item", cel.DynType),
		cel.Variable("body", cel.DynType),
		cel.Variable("headers", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("ce", cel.MapType(cel.StringType, cel.StringType)),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Bindings(),
		ext.Encoders(),
	)
}

// compileMap compiles mc; withheld names the headers expressions must not
// read (credentials).
func compileMap(c *checker, mc MapConfig, format string, withheld func(string) bool) *mapping {
	env, err := newCELEnv()
	if err != nil {
		c.add("map", "CEL environment: %v", err)
		return nil
	}
	m := &mapping{target: mc.Target, structure: mc.Structure}
	if !validTarget(mc.Target) {
		c.add("map.target", "must be revyops or skipcall, not %q", mc.Target)
	}
	if mc.Structure != "" && (mc.Target != "revyops" || (mc.Structure != "FLAT" && mc.Structure != "NESTED")) {
		c.add("map.structure", "must be FLAT or NESTED, and only for target revyops")
	}
	compile := func(key, src string, required bool, want ...*cel.Type) *expr {
		if src == "" {
			if required {
				c.add("map."+key, "is required")
			}
			return nil
		}
		a, iss := env.Compile(src)
		if iss.Err() != nil {
			c.add("map."+key, "expression %q: %s", oneLine(src), oneLine(iss.Err().Error()))
			return nil
		}
		if out := a.OutputType(); !out.IsExactType(cel.DynType) && len(want) > 0 && !slices.ContainsFunc(want, func(w *cel.Type) bool { return w.IsAssignableType(out) }) {
			c.add("map."+key, "expression %q has type %s; want %s", oneLine(src), out, typeNames(want))
			return nil
		}
		for _, h := range headerRefs(a) {
			if withheld(h) {
				c.add("map."+key, "expression %q reads header %s, which carries credentials: mappings cannot see it", oneLine(src), h)
				return nil
			}
		}
		prg, err := env.Program(a, cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100))
		if err != nil {
			c.add("map."+key, "expression %q: %v", oneLine(src), err)
			return nil
		}
		return &expr{key: key, prg: prg, refs: itemRefs(a)}
	}
	m.filter = compile("filter", mc.Filter, false, cel.BoolType)
	m.contactID = compile("contact_id", mc.ContactID, true, cel.StringType, cel.IntType, cel.UintType)
	m.occurredAt = compile("occurred_at", mc.OccurredAt, format != FormatCloudEvents,
		cel.IntType, cel.UintType, cel.DoubleType, cel.StringType, cel.TimestampType)
	m.patch = compile("patch", mc.Patch, true, cel.MapType(cel.StringType, cel.DynType), cel.MapType(cel.DynType, cel.DynType))
	return m
}

// typeNames lists types for an error message.
func typeNames(ts []*cel.Type) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, " or ")
}

// oneLine folds an expression or message onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// itemRefs returns the item fields an expression reads (item.a.b,
// item.?a, item["a"] -> "a"), so errors can name the source field.
func itemRefs(a *cel.Ast) []string {
	var refs []string
	ast.PreOrderVisit(a.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if parts, ok := itemPath(e); ok && len(parts) > 0 {
			refs = append(refs, strings.Join(parts, "."))
		}
	}))
	// Keep the longest paths: item.a.b also visits item.a.
	slices.Sort(refs)
	refs = slices.Compact(refs)
	out := refs[:0]
	for i, r := range refs {
		if i+1 < len(refs) && strings.HasPrefix(refs[i+1], r+".") {
			continue
		}
		out = append(out, r)
	}
	return out
}

// itemPath returns the field path e selects from item, if it does.
func itemPath(e ast.Expr) ([]string, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		return nil, e.AsIdent() == "item"
	case ast.SelectKind:
		parts, ok := itemPath(e.AsSelect().Operand())
		return append(parts, e.AsSelect().FieldName()), ok
	case ast.CallKind:
		c := e.AsCall()
		if (c.FunctionName() != "_?._" && c.FunctionName() != "_[_]" && c.FunctionName() != "_[?_]") || len(c.Args()) != 2 {
			return nil, false
		}
		k := c.Args()[1]
		if k.Kind() != ast.LiteralKind {
			return nil, false
		}
		name, ok := k.AsLiteral().Value().(string)
		if !ok {
			return nil, false
		}
		parts, ok := itemPath(c.Args()[0])
		return append(parts, name), ok
	}
	return nil, false
}

// field names the source field behind e for an error: the item fields it
// reads, else the map key.
func (e *expr) field() string {
	if e == nil {
		return ""
	}
	if len(e.refs) > 0 {
		return strings.Join(e.refs, ", ")
	}
	return "map." + e.key
}

// eval runs e on vars.
func (e *expr) eval(vars map[string]any) (ref.Val, error) {
	v, _, err := e.prg.Eval(vars)
	if err != nil {
		return nil, fmt.Errorf("map.%s: %w", e.key, err)
	}
	return v, nil
}

// errBadValue is wrapped when an expression yields a value of a type the
// event field cannot take.
var errBadValue = errors.New("unusable value")

// toJSON converts a CEL value to JSON-encodable Go values: maps with string
// keys, slices, strings, int64, uint64, float64, bool, nil. A timestamp
// becomes an RFC 3339 string.
func toJSON(v ref.Val) (any, error) {
	switch v.Type() {
	case types.NullType:
		return nil, nil
	case types.BoolType, types.StringType, types.IntType, types.UintType:
		return v.Value(), nil
	case types.DoubleType:
		f := v.Value().(float64)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: %v is not a JSON number", errBadValue, f)
		}
		return f, nil
	case types.TimestampType:
		return v.Value().(time.Time).UTC().Format(time.RFC3339Nano), nil
	}
	if l, ok := v.(traits.Lister); ok {
		var out []any
		for it := l.Iterator(); it.HasNext() == types.True; {
			x, err := toJSON(it.Next())
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	}
	if m, ok := v.(traits.Mapper); ok {
		out := map[string]any{}
		for it := m.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, ok := k.Value().(string)
			if !ok {
				return nil, fmt.Errorf("%w: map key %v is not a string", errBadValue, k)
			}
			x, err := toJSON(m.Get(k))
			if err != nil {
				return nil, err
			}
			out[ks] = x
		}
		return out, nil
	}
	if v.Type() == types.ErrType || v.Type() == types.UnknownType {
		return nil, fmt.Errorf("%w: %v", errBadValue, v)
	}
	return nil, fmt.Errorf("%w: %s", errBadValue, v.Type().TypeName())
}

// occurredAt converts the occurred_at value: integers and doubles are
// milliseconds since the Unix epoch (HubSpot's occurredAt), strings RFC 3339,
// timestamps themselves.
func occurredAt(v ref.Val) (string, error) {
	switch x := v.Value().(type) {
	case int64:
		return time.UnixMilli(x).UTC().Format(time.RFC3339Nano), nil
	case uint64:
		if x > math.MaxInt64 {
			return "", fmt.Errorf("%w: %d ms is out of range", errBadValue, x)
		}
		return time.UnixMilli(int64(x)).UTC().Format(time.RFC3339Nano), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > 1e15 {
			return "", fmt.Errorf("%w: %v ms is out of range", errBadValue, x)
		}
		return time.UnixMilli(int64(x)).UTC().Format(time.RFC3339Nano), nil
	case string:
		return x, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("%w: want milliseconds, an RFC 3339 string or a timestamp, not %s", errBadValue, v.Type().TypeName())
}

// contactID converts the contact_id value: a string or an integer.
func contactID(v ref.Val) (string, any, error) {
	switch x := v.Value().(type) {
	case string:
		return x, x, nil
	case int64:
		return strconv.FormatInt(x, 10), json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return strconv.FormatUint(x, 10), json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			s := strconv.FormatInt(int64(x), 10)
			return s, json.Number(s), nil
		}
	}
	return "", nil, fmt.Errorf("%w: want a string or an integer, not %s", errBadValue, v.Type().TypeName())
}

// jsonValue decodes raw JSON for CEL: objects as map[string]any, integers
// that fit as int64 (so ids print without exponent), other numbers float64.
func jsonValue(raw []byte) (any, error) {
	r := gjson.ParseBytes(raw)
	return fromGJSON(r, 0)
}

// maxDepth bounds the nesting jsonValue follows.
const maxDepth = 64

func fromGJSON(r gjson.Result, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("nested deeper than 64 levels")
	}
	switch r.Type {
	case gjson.Null:
		return nil, nil
	case gjson.False:
		return false, nil
	case gjson.True:
		return true, nil
	case gjson.String:
		return r.Str, nil
	case gjson.Number:
		if i, err := strconv.ParseInt(r.Raw, 10, 64); err == nil {
			return i, nil
		}
		return r.Num, nil
	}
	var err error
	if r.IsArray() {
		out := []any{}
		r.ForEach(func(_, v gjson.Result) bool {
			var x any
			x, err = fromGJSON(v, depth+1)
			out = append(out, x)
			return err == nil
		})
		return out, err
	}
	out := map[string]any{}
	r.ForEach(func(k, v gjson.Result) bool {
		var x any
		x, err = fromGJSON(v, depth+1)
		out[k.Str] = x
		return err == nil
	})
	return out, err
}

// gjsonPathOK reports whether p is a plain gjson path (no modifiers, which
// could run arbitrary transforms).
func gjsonPathOK(p string) bool {
	return p != "" && !strings.ContainsAny(p, "@|#") && !strings.HasPrefix(p, ".")
}
