package sources

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/events"
)

// CloudEvents media types (CloudEvents 1.0 HTTP protocol binding).
const (
	MediaCloudEvents      = "application/cloudevents+json"
	MediaCloudEventsBatch = "application/cloudevents-batch+json"
)

// CloudEvent is one decoded CloudEvents 1.0 event whose data is JSON.
type CloudEvent struct {
	ID, Source, Type, Subject string
	// Time is the ce time attribute; zero when absent.
	Time time.Time
	// Data is the event's JSON data.
	Data json.RawMessage
	// Attrs holds every context attribute (extensions included) as
	// strings, for mapping expressions (variable ce).
	Attrs map[string]string
}

// DecodeCloudEvents reads the CloudEvents in an HTTP request: binary mode
// (ce-* headers, the body is the data), structured mode
// (application/cloudevents+json) or batch mode
// (application/cloudevents-batch+json). Data must be JSON (data, or
// data_base64 holding JSON). It returns ErrUnsupportedMedia for any other
// request, an error wrapping events.ErrMalformed for a body that is not
// JSON of the right shape, and an *events.ValidationError (Field the
// attribute name, Index the event's place in a batch) for missing or
// invalid attributes.
func DecodeCloudEvents(h http.Header, body []byte, maxBatch int) ([]CloudEvent, error) {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	switch {
	case err == nil && mt == MediaCloudEvents:
		return decodeStructured(body)
	case err == nil && mt == MediaCloudEventsBatch:
		return decodeBatch(body, maxBatch)
	case h.Get("ce-specversion") != "":
		if err != nil || !jsonMedia(mt) {
			return nil, fmt.Errorf("%w: binary-mode data must be JSON (Content-Type application/json)", ErrUnsupportedMedia)
		}
		return decodeBinary(h, body)
	}
	return nil, fmt.Errorf("%w: send %s, %s, or ce-* headers with JSON data", ErrUnsupportedMedia, MediaCloudEvents, MediaCloudEventsBatch)
}

// jsonMedia reports whether mt is application/json or a +json type.
func jsonMedia(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func decodeBinary(h http.Header, body []byte) ([]CloudEvent, error) {
	ev := CloudEvent{Attrs: map[string]string{}}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "ce-"); ok && len(vs) > 0 && name != "" {
			ev.Attrs[name] = percentDecode(vs[0])
		}
	}
	if ct := h.Get("Content-Type"); ct != "" {
		ev.Attrs["datacontenttype"] = ct
	}
	c := &ceCollector{}
	ev.fromAttrs(c)
	if kindOfJSON(body) != '{' {
		c.add("data", "must be a JSON object")
	} else if err := checkJSONObject(body); err != nil {
		return nil, err
	} else {
		ev.Data = body
	}
	if c.errs != nil {
		return nil, &events.ValidationError{Errors: c.errs}
	}
	return []CloudEvent{ev}, nil
}

func decodeStructured(body []byte) ([]CloudEvent, error) {
	var m map[string]json.RawMessage
	if err := unmarshalObject(body, &m); err != nil {
		return nil, err
	}
	c := &ceCollector{}
	ev := fromStructured(c, m)
	if c.errs != nil {
		return nil, &events.ValidationError{Errors: c.errs}
	}
	return []CloudEvent{ev}, nil
}

func decodeBatch(body []byte, maxBatch int) ([]CloudEvent, error) {
	var arr []map[string]json.RawMessage
	if err := json.Unmarshal(body, &arr); err != nil || arr == nil {
		return nil, fmt.Errorf("%w: a CloudEvents batch is a JSON array of objects", events.ErrMalformed)
	}
	switch {
	case len(arr) == 0:
		return nil, &events.ValidationError{Errors: []events.FieldError{{Reason: "batch must hold at least one event"}}}
	case len(arr) > maxBatch:
		return nil, &events.ValidationError{Errors: []events.FieldError{{Reason: "batch holds " + strconv.Itoa(len(arr)) + " events; the limit is " + strconv.Itoa(maxBatch)}}}
	}
	c := &ceCollector{}
	out := make([]CloudEvent, len(arr))
	for i, m := range arr {
		c.index = i
		if m == nil {
			c.add("", "must be an object")
			continue
		}
		out[i] = fromStructured(c, m)
	}
	if c.errs != nil {
		return nil, &events.ValidationError{Errors: c.errs}
	}
	return out, nil
}

// fromStructured reads one structured-mode event.
func fromStructured(c *ceCollector, m map[string]json.RawMessage) CloudEvent {
	ev := CloudEvent{Attrs: make(map[string]string, len(m))}
	for k, v := range m {
		if k == "data" || k == "data_base64" {
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			ev.Attrs[k] = s
		} else if bytes.Equal(v, []byte("null")) {
			continue
		} else {
			// Extensions may be booleans or integers; keep their JSON text.
			ev.Attrs[k] = string(v)
			if k == "specversion" || k == "id" || k == "source" || k == "type" || k == "time" || k == "subject" || k == "datacontenttype" {
				c.add(k, "must be a string")
			}
		}
	}
	ev.fromAttrs(c)
	data, hasData := m["data"]
	b64, hasB64 := m["data_base64"]
	switch {
	case hasData && hasB64:
		c.add("data", "data and data_base64 are exclusive")
	case hasB64:
		var s string
		raw, err := []byte(nil), json.Unmarshal(b64, &s)
		if err == nil {
			raw, err = base64.StdEncoding.DecodeString(s)
		}
		if err != nil || kindOfJSON(raw) != '{' || checkJSONObject(raw) != nil {
			c.add("data_base64", "must be base64 of a JSON object")
		} else {
			ev.Data = raw
		}
	case kindOfJSON(data) != '{':
		c.add("data", "must be a JSON object")
	default:
		ev.Data = data
	}
	if ct, ok := ev.Attrs["datacontenttype"]; ok {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !jsonMedia(mt) {
			c.add("datacontenttype", "must be a JSON media type")
		}
	}
	return ev
}

// fromAttrs checks the required attributes and fills the typed fields.
func (ev *CloudEvent) fromAttrs(c *ceCollector) {
	if v := ev.Attrs["specversion"]; v != "1.0" {
		c.add("specversion", `must be "1.0"`)
	}
	for _, k := range []string{"id", "source", "type"} {
		if ev.Attrs[k] == "" {
			c.add(k, "is required")
		}
	}
	ev.ID, ev.Source, ev.Type, ev.Subject = ev.Attrs["id"], ev.Attrs["source"], ev.Attrs["type"], ev.Attrs["subject"]
	if t, ok := ev.Attrs["time"]; ok {
		tm, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			c.add("time", "must be an RFC 3339 timestamp")
		}
		ev.Time = tm
	}
}

// ceCollector accumulates attribute problems.
type ceCollector struct {
	index int
	errs  []events.FieldError
}

func (c *ceCollector) add(field, reason string) {
	c.errs = append(c.errs, events.FieldError{Index: c.index, Field: field, Reason: reason})
}

// unmarshalObject decodes body, which must be one JSON object, into v.
func unmarshalObject(body []byte, v any) error {
	if kindOfJSON(body) != '{' {
		return fmt.Errorf("%w: body must be a JSON object", events.ErrMalformed)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %v", events.ErrMalformed, err)
	}
	return nil
}

// checkJSONObject returns an error wrapping events.ErrMalformed unless b is
// valid JSON.
func checkJSONObject(b []byte) error {
	if !json.Valid(b) {
		return fmt.Errorf("%w: data is not valid JSON", events.ErrMalformed)
	}
	return nil
}

// kindOfJSON returns the first non-space byte of b, or 0.
func kindOfJSON(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// percentDecode undoes the percent-encoding the HTTP binding applies to
// ce-* header values; a malformed escape is kept as is.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
