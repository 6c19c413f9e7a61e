package sources

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
)

// DefaultContactsBucket is the NATS KV bucket of the contact map.
const DefaultContactsBucket = "PATCHBAY_CONTACTS"

// ErrUnmapped is returned when a source contact id has no provider id.
var ErrUnmapped = errors.New("sources: contact id not mapped")

// ContactMap maps a source's contact ids to provider contact ids, in a NATS
// KV bucket keyed <source>.<target>.<base64url(source id)>.
type ContactMap struct {
	kv jetstream.KeyValue
}

// kvOpener is what ContactMap needs of JetStream.
type kvOpener interface {
	CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error)
}

// OpenContactMap creates or updates the bucket and returns its map.
func OpenContactMap(ctx context.Context, js kvOpener, bucket string, replicas int) (*ContactMap, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "patchbay contact map: source contact id -> provider contact id", Replicas: replicas, History: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("sources: contact map bucket %s: %w", bucket, err)
	}
	return &ContactMap{kv: kv}, nil
}

// ContactKey returns the KV key of source's contact sourceID at target.
func ContactKey(source string, target events.Target, sourceID string) string {
	return source + "." + string(target) + "." + base64.RawURLEncoding.EncodeToString([]byte(sourceID))
}

// Contact is one entry of the contact map.
type Contact struct {
	Source     string `json:"source"`
	Target     string `json:"target"`
	SourceID   string `json:"source_id"`
	ProviderID string `json:"provider_id"`
}

// Get returns the provider id of source's contact sourceID at target.
// ErrUnmapped if there is none; other errors are JetStream's, wrapped.
func (m *ContactMap) Get(ctx context.Context, source string, target events.Target, sourceID string) (string, error) {
	e, err := m.kv.Get(ctx, ContactKey(source, target, sourceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: %s %s %q", ErrUnmapped, source, target, sourceID)
	}
	if err != nil {
		return "", fmt.Errorf("sources: contact map get: %w", err)
	}
	return string(e.Value()), nil
}

// Put stores c after checking that the provider id is valid for its target
// (it is stored canonical).
func (m *ContactMap) Put(ctx context.Context, c Contact) error {
	id, err := CheckContact(c)
	if err != nil {
		return err
	}
	if _, err := m.kv.Put(ctx, ContactKey(c.Source, events.Target(c.Target), c.SourceID), []byte(id)); err != nil {
		return fmt.Errorf("sources: contact map put: %w", err)
	}
	return nil
}

// Delete removes one entry. ErrUnmapped if it was not there.
func (m *ContactMap) Delete(ctx context.Context, source string, target events.Target, sourceID string) error {
	key := ContactKey(source, target, sourceID)
	if _, err := m.kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: %s %s %q", ErrUnmapped, source, target, sourceID)
	}
	if err := m.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("sources: contact map delete: %w", err)
	}
	return nil
}

// List returns every entry, sorted by source, target and source id.
func (m *ContactMap) List(ctx context.Context) ([]Contact, error) {
	lister, err := m.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("sources: contact map list: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var out []Contact
	for key := range lister.Keys() {
		parts := strings.SplitN(key, ".", 3)
		if len(parts) != 3 {
			continue
		}
		sid, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil {
			continue
		}
		e, err := m.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sources: contact map get: %w", err)
		}
		out = append(out, Contact{Source: parts[0], Target: parts[1], SourceID: string(sid), ProviderID: string(e.Value())})
	}
	slices.SortFunc(out, func(a, b Contact) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Target, b.Target), cmp.Compare(a.SourceID, b.SourceID))
	})
	return out, nil
}

// CheckContact validates c and returns its provider id in canonical form.
func CheckContact(c Contact) (string, error) {
	if !sourceName.MatchString(c.Source) {
		return "", fmt.Errorf("sources: contact source %q is not a source name", c.Source)
	}
	if !validTarget(c.Target) {
		return "", fmt.Errorf("sources: contact target must be revyops or skipcall, not %q", c.Target)
	}
	if c.SourceID == "" {
		return "", errors.New("sources: contact source_id is empty")
	}
	// The provider id is checked by the events package, as ingest would.
	ev := events.Event{ID: "x", Target: events.Target(c.Target), ContactID: c.ProviderID, OccurredAt: time.Unix(0, 0), Patch: json.RawMessage(`{}`)}
	for _, fe := range ev.Validate() {
		if fe.Field == "contact_id" {
			return "", fmt.Errorf("sources: provider_id %q for %s %s: %s", c.ProviderID, c.Target, fe.Field, fe.Reason)
		}
	}
	return ev.ContactID, nil
}

// ImportCSV reads rows source,target,source_id,provider_id (a header row
// with these names is skipped) and stores each. Every row is checked before
// anything is stored; the error names the line.
func (m *ContactMap) ImportCSV(ctx context.Context, r io.Reader) (int, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 4
	cr.TrimLeadingSpace = true
	var rows []Contact
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("sources: csv: %w", err)
		}
		if line == 1 && rec[0] == "source" && rec[2] == "source_id" {
			continue
		}
		c := Contact{Source: rec[0], Target: rec[1], SourceID: rec[2], ProviderID: rec[3]}
		if _, err := CheckContact(c); err != nil {
			return 0, fmt.Errorf("line %d: %w", line, err)
		}
		rows = append(rows, c)
	}
	for i, c := range rows {
		if err := m.Put(ctx, c); err != nil {
			return i, err
		}
	}
	return len(rows), nil
}

// Resolver resolves unmapped dead letters at replay: it looks the source
// contact id up again and returns the mapped event. It implements
// dlq.Resolver.
type Resolver struct {
	// Open returns the contact map; it is called once, at the first letter.
	Open   func(ctx context.Context) (*ContactMap, error)
	Prefix string
	m      *ContactMap
}

// Resolve returns the subject, data and message id to publish for an
// unmapped letter. It wraps dlq.ErrStillUnmapped when the map still has no
// entry, and events.ErrInvalid when the resolved event fails validation.
func (r *Resolver) Resolve(ctx context.Context, l dlq.Letter) (string, []byte, string, error) {
	if r.m == nil {
		m, err := r.Open(ctx)
		if err != nil {
			return "", nil, "", err
		}
		r.m = m
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(l.Data, &fields); err != nil {
		return "", nil, "", fmt.Errorf("sources: unmapped letter payload: %w", err)
	}
	// The payload holds the source contact id exactly; the header is for
	// people.
	var sid string
	if json.Unmarshal(fields["contact_id"], &sid) != nil {
		sid = string(fields["contact_id"])
	}
	pid, err := r.m.Get(ctx, l.Source, events.Target(l.Target), sid)
	if errors.Is(err, ErrUnmapped) {
		return "", nil, "", fmt.Errorf("%w: %v", dlq.ErrStillUnmapped, err)
	}
	if err != nil {
		return "", nil, "", err
	}
	fields["contact_id"], _ = json.Marshal(pid)
	data, _ := json.Marshal(fields)
	ev, err := events.Decode(data)
	if err != nil {
		return "", nil, "", err
	}
	out, err := ev.Marshal()
	if err != nil {
		return "", nil, "", err
	}
	return ev.Subject(r.Prefix), out, ev.ID, nil
}
