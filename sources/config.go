// Package sources turns webhooks as real senders post them (a CRM's own JSON,
// CloudEvents) into patchbay events: each named source declares how a request
// is authenticated, how its payload is read, where its delivery id is, and how
// each item maps to an event. Sources are declared in a YAML file, checked
// and compiled once at start.
package sources

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/redact"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("sources: invalid configuration")

// ConfigError lists every mistake found in a sources file, one line each,
// naming the source and the key. It wraps ErrConfig.
type ConfigError struct {
	Problems []string
}

// Error joins the problems, one per line.
func (e *ConfigError) Error() string {
	return ErrConfig.Error() + ":\n  " + strings.Join(e.Problems, "\n  ")
}

// Unwrap returns ErrConfig.
func (e *ConfigError) Unwrap() error { return ErrConfig }

// File is the YAML sources file.
type File struct {
	Sources map[string]SourceConfig `yaml:"sources"`
}

// SourceConfig declares one source, served at POST /v1/sources/{name}.
type SourceConfig struct {
	Auth   AuthConfig `yaml:"auth"`
	Format string     `yaml:"format"` // json (default) or cloudevents
	// ID says where the delivery id is: a request header or a JSON path
	// (gjson syntax) in each item. CloudEvents use ce-id and Standard
	// Webhooks webhook-id unless ID is set.
	ID IDConfig `yaml:"id"`
	// Contacts is "lookup" when contact ids are the source's own and must be
	// looked up in the contact map, "" or "direct" when they are the
	// provider's.
	Contacts string     `yaml:"contacts"`
	Map      *MapConfig `yaml:"map"`
}

// AuthConfig declares how a source authenticates requests.
type AuthConfig struct {
	// Scheme is standard-webhooks, hmac-sha256, hubspot-v3, bearer or none.
	Scheme  string         `yaml:"scheme"`
	Secrets []SecretConfig `yaml:"secrets"`
	// hmac-sha256: the header carrying the signature, a prefix before it
	// (GitHub: "sha256="), and its encoding, hex or base64.
	Header   string `yaml:"header"`
	Prefix   string `yaml:"prefix"`
	Encoding string `yaml:"encoding"`
	// hubspot-v3: the scheme, host (and any path prefix) HubSpot calls,
	// e.g. https://hooks.example.com; the request path is appended.
	PublicURL string `yaml:"public_url"`
	// hubspot-v3: oldest request timestamp accepted (default 5m).
	MaxAge time.Duration `yaml:"max_age"`
}

// SecretConfig names where one secret is read: an environment variable or a
// file. The value itself never appears in the sources file.
type SecretConfig struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// IDConfig locates the delivery id.
type IDConfig struct {
	Header string `yaml:"header"`
	JSON   string `yaml:"json"`
}

// MapConfig maps one item of a payload to one event. Target and Structure
// are literals; the others are CEL expressions over item (the JSON item),
// body (the whole payload), headers (lower-case names) and ce (CloudEvents
// attributes).
type MapConfig struct {
	Filter     string `yaml:"filter"`      // bool; items for which it is false are skipped
	Target     string `yaml:"target"`      // revyops or skipcall
	ContactID  string `yaml:"contact_id"`  // string or int
	OccurredAt string `yaml:"occurred_at"` // int or double ms since the epoch, RFC 3339 string, or timestamp
	Patch      string `yaml:"patch"`       // map: the provider's PATCH body
	Structure  string `yaml:"structure"`   // RevyOps FLAT or NESTED
}

// Formats and schemes.
const (
	FormatJSON        = "json"
	FormatCloudEvents = "cloudevents"

	SchemeStandardWebhooks = "standard-webhooks"
	SchemeHMAC             = "hmac-sha256"
	SchemeHubSpotV3        = "hubspot-v3"
	SchemeBearer           = "bearer"
	SchemeNone             = "none"

	contactsLookup = "lookup"
)

// sourceName is what a source may be called: one URL path segment that is
// also a NATS KV key token.
var sourceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Env reads secrets; os.LookupEnv and os.ReadFile in production.
type Env struct {
	LookupEnv func(string) (string, bool)
	ReadFile  func(string) ([]byte, error)
}

// OSEnv reads secrets from the process environment and the file system.
func OSEnv() Env { return Env{LookupEnv: os.LookupEnv, ReadFile: os.ReadFile} }

// Set is the compiled sources, by name.
type Set struct {
	byName map[string]*Source
	// Warnings are things to log at start (a source without authentication).
	Warnings []string
}

// Get returns the source called name.
func (s *Set) Get(name string) (*Source, bool) {
	src, ok := s.byName[name]
	return src, ok
}

// Names returns the source names, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// LookupContacts reports whether any source looks contact ids up.
func (s *Set) LookupContacts() bool {
	for _, src := range s.byName {
		if src.lookup {
			return true
		}
	}
	return false
}

// Load reads and compiles the sources file at path. See Parse.
func Load(path string, env Env) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sources: %w", err)
	}
	return Parse(data, env)
}

// Parse decodes a sources file (unknown keys are mistakes), reads every
// secret through env and compiles every expression. It returns a
// *ConfigError listing every mistake found.
func Parse(data []byte, env Env) (*Set, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, &ConfigError{Problems: []string{"yaml: " + err.Error()}}
	}
	set := &Set{byName: map[string]*Source{}}
	var problems []string
	if len(f.Sources) == 0 {
		problems = append(problems, "sources: none declared")
	}
	names := make([]string, 0, len(f.Sources))
	for n := range f.Sources {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		c := &checker{source: name}
		src := compileSource(c, name, f.Sources[name], env)
		problems = append(problems, c.problems...)
		if len(c.problems) == 0 {
			set.byName[name] = src
			if src.auth.scheme() == SchemeNone {
				set.Warnings = append(set.Warnings, fmt.Sprintf("source %q accepts unauthenticated requests (auth.scheme: none)", name))
			}
		}
	}
	if problems != nil {
		return nil, &ConfigError{Problems: problems}
	}
	return set, nil
}

// checker collects the problems of one source.
type checker struct {
	source   string
	problems []string
}

// add records a problem on key.
func (c *checker) add(key, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("source %q: %s: %s", c.source, key, fmt.Sprintf(format, args...)))
}

func compileSource(c *checker, name string, sc SourceConfig, env Env) *Source {
	src := &Source{Name: name, format: sc.Format}
	if !sourceName.MatchString(name) {
		c.add("name", "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
	if src.format == "" {
		src.format = FormatJSON
	}
	if src.format != FormatJSON && src.format != FormatCloudEvents {
		c.add("format", "must be json or cloudevents, not %q", sc.Format)
	}
	src.auth = compileAuth(c, sc.Auth, env)
	src.authHeader = strings.ToLower(sc.Auth.Header)
	switch sc.Contacts {
	case "", "direct":
	case contactsLookup:
		src.lookup = true
	default:
		c.add("contacts", "must be direct or lookup, not %q", sc.Contacts)
	}
	src.id = compileID(c, sc, src.format)
	if sc.Map == nil {
		if src.format == FormatJSON {
			c.add("map", "is required for format json")
		}
		if src.lookup {
			c.add("contacts", "lookup needs a map")
		}
	} else {
		src.mapping = compileMap(c, *sc.Map, src.format, src.withholds)
	}
	return src
}

func compileID(c *checker, sc SourceConfig, format string) idSpec {
	id := idSpec{header: sc.ID.Header, path: sc.ID.JSON}
	switch {
	case id.header != "" && id.path != "":
		c.add("id", "say header or json, not both")
	case format == FormatCloudEvents && (id.header != "" || id.path != ""):
		c.add("id", "CloudEvents sources use ce-id; remove id")
	case format == FormatCloudEvents:
		id.ce = true
	case id.header == "" && id.path == "" && sc.Auth.Scheme == SchemeStandardWebhooks:
		id.header = "webhook-id"
	case id.header == "" && id.path == "":
		c.add("id", "is required: name the delivery id's header (id.header) or JSON path (id.json), so retries are stored once")
	}
	if id.path != "" && !gjsonPathOK(id.path) {
		c.add("id.json", "%q is not a valid JSON path", id.path)
	}
	return id
}

// readSecrets resolves every configured secret.
func readSecrets(c *checker, list []SecretConfig, env Env) []redact.Secret {
	var out []redact.Secret
	for i, s := range list {
		key := fmt.Sprintf("auth.secrets[%d]", i)
		switch {
		case s.Env != "" && s.File != "":
			c.add(key, "say env or file, not both")
		case s.Env != "":
			v, ok := env.LookupEnv(s.Env)
			if !ok || v == "" {
				c.add(key, "environment variable %s is not set", s.Env)
				continue
			}
			out = append(out, redact.Secret(v))
		case s.File != "":
			b, err := env.ReadFile(s.File)
			if err != nil {
				c.add(key, "cannot read file %s: %v", s.File, errors.Unwrap(err))
				continue
			}
			v := strings.TrimRight(string(b), "\r\n")
			if v == "" {
				c.add(key, "file %s is empty", s.File)
				continue
			}
			out = append(out, redact.Secret(v))
		default:
			c.add(key, "say env: NAME or file: PATH")
		}
	}
	return out
}

// validTarget reports whether t names a provider.
func validTarget(t string) bool {
	return t == string(events.TargetRevyOps) || t == string(events.TargetSkipcall)
}
