package sources_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/sources"
)

const ceData = `{"target":"skipcall","contact_id":"0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c","patch":{"firstName":"Ada","city":"Paris"}}`

func structured(id string) string {
	return `{"specversion":"1.0","id":"` + id + `","source":"urn:example:billing","type":"com.example.contact.changed","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":` + ceData + `}`
}

func binaryHeader() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", "ce-1")
	h.Set("ce-source", "urn:example:billing")
	h.Set("ce-type", "com.example.contact.changed")
	h.Set("ce-time", "2026-11-25T10:00:00Z")
	h.Set("ce-tenant", "acme")
	return h
}

func TestDecodeCloudEventsModes(t *testing.T) {
	ces, err := sources.DecodeCloudEvents(binaryHeader(), []byte(ceData), 10)
	if err != nil || len(ces) != 1 || ces[0].ID != "ce-1" || ces[0].Attrs["tenant"] != "acme" || string(ces[0].Data) != ceData ||
		!ces[0].Time.Equal(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("binary: %+v %v", ces, err)
	}
	ces, err = sources.DecodeCloudEvents(http.Header{"Content-Type": {sources.MediaCloudEvents + "; charset=utf-8"}}, []byte(structured("s-1")), 10)
	if err != nil || len(ces) != 1 || ces[0].ID != "s-1" || ces[0].Source != "urn:example:billing" || string(ces[0].Data) != ceData {
		t.Fatalf("structured: %+v %v", ces, err)
	}
	b64 := `{"specversion":"1.0","id":"b","source":"s","type":"t","data_base64":"eyJhIjoxfQ=="}`
	ces, err = sources.DecodeCloudEvents(http.Header{"Content-Type": {sources.MediaCloudEvents}}, []byte(b64), 10)
	if err != nil || string(ces[0].Data) != `{"a":1}` {
		t.Fatalf("data_base64: %+v %v", ces, err)
	}
	batch := "[" + structured("b-1") + "," + structured("b-2") + "]"
	ces, err = sources.DecodeCloudEvents(http.Header{"Content-Type": {sources.MediaCloudEventsBatch}}, []byte(batch), 10)
	if err != nil || len(ces) != 2 || ces[1].ID != "b-2" {
		t.Fatalf("batch: %+v %v", ces, err)
	}
}

func TestDecodeCloudEventsErrors(t *testing.T) {
	st := http.Header{"Content-Type": {sources.MediaCloudEvents}}
	cases := []struct {
		name  string
		hdr   http.Header
		body  string
		field string // "" with malformed
	}{
		// The SDK refuses these while reading, but the body is JSON: 422
		// on the attribute, as for those refused after reading.
		{"no specversion", st, `{"id":"a","source":"s","type":"t","data":{}}`, "specversion"},
		{"version 0.3", st, `{"specversion":"0.3","id":"a","source":"s","type":"t","data":{}}`, "specversion"},
		{"version 2.0", st, `{"specversion":"2.0","id":"a","source":"s","type":"t","data":{}}`, "specversion"},
		{"no id", st, `{"specversion":"1.0","source":"s","type":"t","data":{}}`, "id"},
		{"id not a string", st, `{"specversion":"1.0","id":7,"source":"s","type":"t","data":{}}`, "id"},
		{"bad time", st, `{"specversion":"1.0","id":"a","source":"s","type":"t","time":"today","data":{}}`, "time"},
		{"xml data", st, `{"specversion":"1.0","id":"a","source":"s","type":"t","datacontenttype":"application/xml","data":{}}`, "datacontenttype"},
		{"bad base64", st, `{"specversion":"1.0","id":"a","source":"s","type":"t","data_base64":"!!"}`, "data_base64"},
		{"extension object", st, `{"specversion":"1.0","id":"a","source":"s","type":"t","tenant":{"a":1},"data":{}}`, "tenant"},
		{"batch item id not a string", http.Header{"Content-Type": {sources.MediaCloudEventsBatch}},
			`[{"specversion":"1.0","id":"a","source":"s","type":"t","data":{}},{"specversion":"1.0","id":7,"source":"s","type":"t","data":{}}]`, "id"},
		{"binary bad time", http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"a"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}, "Ce-Time": {"today"}}, `{}`, "time"},
		{"binary version 9.9", http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"9.9"}, "Ce-Id": {"a"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}}, `{}`, "specversion"},
		// These are read, then refused by validation: 422 on the attribute.
		{"data not an object", st, `{"specversion":"1.0","id":"a","source":"s","type":"t","data":"x"}`, "data"},
		{"xml string data", st, `{"specversion":"1.0","id":"a","source":"s","type":"t","datacontenttype":"application/xml","data":"<a/>"}`, "datacontenttype"},
		{"no source", st, `{"specversion":"1.0","id":"a","type":"t","data":{}}`, "source"},
		// Not JSON, or JSON of the wrong shape: 400 malformed.
		{"not JSON", st, `{"specversion":`, ""},
		{"array in structured", st, `[]`, ""},
		{"batch not JSON", http.Header{"Content-Type": {sources.MediaCloudEventsBatch}}, `[{"specversion":"1.0",]`, ""},
		{"empty batch", http.Header{"Content-Type": {sources.MediaCloudEventsBatch}}, `[]`, "-"},
		{"batch of non-objects", http.Header{"Content-Type": {sources.MediaCloudEventsBatch}}, `[1]`, "-"},
		{"binary without id", http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}}, `{}`, "id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sources.DecodeCloudEvents(tc.hdr, []byte(tc.body), 10)
			var ve *events.ValidationError
			switch {
			case tc.field == "":
				if !errors.Is(err, events.ErrMalformed) {
					t.Fatalf("got %v, want malformed", err)
				}
			case tc.field == "-":
				if !errors.As(err, &ve) {
					t.Fatalf("got %v, want a validation error", err)
				}
			default:
				if !errors.As(err, &ve) || ve.Errors[0].Field != tc.field {
					t.Fatalf("got %v, want a problem on %s", err, tc.field)
				}
				if strings.HasPrefix(tc.name, "batch item") && ve.Errors[0].Index != 1 {
					t.Fatalf("problem %+v names item %d, want 1", ve.Errors[0], ve.Errors[0].Index)
				}
			}
		})
	}
	if _, err := sources.DecodeCloudEvents(http.Header{"Content-Type": {"application/json"}}, []byte(`{}`), 10); !errors.Is(err, sources.ErrUnsupportedMedia) {
		t.Fatalf("plain JSON without ce headers: %v", err)
	}
	if _, err := sources.DecodeCloudEvents(http.Header{"Content-Type": {"text/xml"}, "Ce-Specversion": {"1.0"}}, []byte(`<a/>`), 10); !errors.Is(err, sources.ErrUnsupportedMedia) {
		t.Fatalf("binary XML: %v", err)
	}
}

// The hand decoder against the CloudEvents SDK (cehttp.NewEventFromHTTPRequest
// and NewEventsFromHTTPRequest) on the same requests: both read the body
// from an http.Request and end with the attributes and the JSON data.
//
//	go test -run '^$' -bench CloudEvents -benchmem ./sources/

func ceBenchRequests() map[string]func() *http.Request {
	var batch strings.Builder
	batch.WriteByte('[')
	for i := range 100 {
		if i > 0 {
			batch.WriteByte(',')
		}
		batch.WriteString(structured("b-" + strconv.Itoa(i)))
	}
	batch.WriteByte(']')
	mk := func(h http.Header, body string) func() *http.Request {
		return func() *http.Request {
			return &http.Request{Method: "POST", Header: h, Body: io.NopCloser(strings.NewReader(body))}
		}
	}
	return map[string]func() *http.Request{
		"binary":     mk(binaryHeader(), ceData),
		"structured": mk(http.Header{"Content-Type": {sources.MediaCloudEvents}}, structured("s-1")),
		"batch100":   mk(http.Header{"Content-Type": {sources.MediaCloudEventsBatch}}, batch.String()),
	}
}

func BenchmarkCloudEventsHand(b *testing.B) {
	for name, mk := range ceBenchRequests() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := mk()
				body, _ := io.ReadAll(r.Body)
				ces, err := sources.HandDecodeCloudEvents(r.Header, body, 1000)
				if err != nil || len(ces) == 0 || len(ces[0].Data) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCloudEventsSDKRaw is the SDK alone; BenchmarkCloudEventsSDK is
// DecodeCloudEvents, the SDK plus patchbay's checks, as ingest runs it.
func BenchmarkCloudEventsSDK(b *testing.B) {
	for name, mk := range ceBenchRequests() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := mk()
				body, _ := io.ReadAll(r.Body)
				ces, err := sources.DecodeCloudEvents(r.Header, body, 1000)
				if err != nil || len(ces) == 0 || len(ces[0].Data) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCloudEventsSDKRaw(b *testing.B) {
	for name, mk := range ceBenchRequests() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := mk()
				if name == "batch100" {
					evs, err := cehttp.NewEventsFromHTTPRequest(r)
					if err != nil || len(evs) != 100 || !json.Valid(evs[0].Data()) {
						b.Fatal(err)
					}
					continue
				}
				ev, err := cehttp.NewEventFromHTTPRequest(r)
				if err != nil || ev.ID() == "" || !json.Valid(ev.Data()) {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSDKAndHandAgree decodes the same requests both ways.
func TestSDKAndHandAgree(t *testing.T) {
	for name, mk := range ceBenchRequests() {
		r := mk()
		body, _ := io.ReadAll(r.Body)
		hand, err := sources.HandDecodeCloudEvents(r.Header, body, 1000)
		if err != nil {
			t.Fatal(name, err)
		}
		r = mk()
		var sdk []struct{ id, source, typ, data string }
		if name == "batch100" {
			evs, err := cehttp.NewEventsFromHTTPRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				sdk = append(sdk, struct{ id, source, typ, data string }{e.ID(), e.Source(), e.Type(), string(e.Data())})
			}
		} else {
			e, err := cehttp.NewEventFromHTTPRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			sdk = append(sdk, struct{ id, source, typ, data string }{e.ID(), e.Source(), e.Type(), string(e.Data())})
		}
		if len(sdk) != len(hand) {
			t.Fatalf("%s: %d vs %d events", name, len(sdk), len(hand))
		}
		for i := range hand {
			var a, b bytes.Buffer
			_ = json.Compact(&a, hand[i].Data)
			_ = json.Compact(&b, []byte(sdk[i].data))
			if hand[i].ID != sdk[i].id || hand[i].Source != sdk[i].source || hand[i].Type != sdk[i].typ || a.String() != b.String() {
				t.Errorf("%s[%d]: hand %+v, sdk %+v", name, i, hand[i], sdk[i])
			}
		}
	}
}
