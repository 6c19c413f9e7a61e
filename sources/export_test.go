package sources

// The hand decoder the CloudEvents SDK was measured against (see
// BenchmarkCloudEventsHand and BenchmarkCloudEventsSDK). It is kept in a
// test file so the comparison can be rerun; production decodes with the SDK.

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

// handDecodeCloudEvents reads the CloudEvents in an HTTP request: binary mode
// (ce-* headers, the body is the data), structured mode
// (application/cloudevents+json) or batch mode
// (application/cloudevents-batch+json). Data must be JSON (data, or
// data_base64 holding JSON). It returns ErrUnsupportedMedia for any other
// request, an error wrapping events.ErrMalformed for a body that is not
// JSON of the right shape, and an *events.ValidationError (Field the
// attribute name, Index the event's place in a batch) for missing or
// invalid attributes.
func handDecodeCloudEvents(h http.Header, body []byte, maxBatch int) ([]CloudEvent, error) {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	switch {
	case err == nil && mt == MediaCloudEvents:
		return handStructured(body)
	case err == nil && mt == MediaCloudEventsBatch:
		return handBatch(body, maxBatch)
	case h.Get("ce-specversion") != "":
		if err != nil || !jsonMedia(mt) {
			return nil, fmt.Errorf("%w: binary-mode data must be JSON (Content-Type application/json)", ErrUnsupportedMedia)
		}
		return handBinary(h, body)
	}
	return nil, fmt.Errorf("%w: send %s, %s, or ce-* headers with JSON data", ErrUnsupportedMedia, MediaCloudEvents, MediaCloudEventsBatch)
}

func handBinary(h http.Header, body []byte) ([]CloudEvent, error) {
	ev := CloudEvent{Attrs: map[string]string{}}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "ce-"); ok && len(vs) > 0 && name != "" {
			ev.Attrs[name] = handPercentDecode(vs[0])
		}
	}
	if ct := h.Get("Content-Type"); ct != "" {
		ev.Attrs["datacontenttype"] = ct
	}
	c := &ceCollector{}
	ev.handFromAttrs(c)
	if kindOfJSON(body) != '{' {
		c.add("data", "must be a JSON object")
	} else if err := handCheckJSON(body); err != nil {
		return nil, err
	} else {
		ev.Data = body
	}
	if c.errs != nil {
		return nil, &events.ValidationError{Errors: c.errs}
	}
	return []CloudEvent{ev}, nil
}

func handStructured(body []byte) ([]CloudEvent, error) {
	var m map[string]json.RawMessage
	if err := handUnmarshalObject(body, &m); err != nil {
		return nil, err
	}
	c := &ceCollector{}
	ev := handFromStructured(c, m)
	if c.errs != nil {
		return nil, &events.ValidationError{Errors: c.errs}
	}
	return []CloudEvent{ev}, nil
}

func handBatch(body []byte, maxBatch int) ([]CloudEvent, error) {
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
		out[i] = handFromStructured(c, m)
	}
	if c.errs != nil {
		return nil, &events.ValidationError{Errors: c.errs}
	}
	return out, nil
}

// handFromStructured reads one structured-mode event.
func handFromStructured(c *ceCollector, m map[string]json.RawMessage) CloudEvent {
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
	ev.handFromAttrs(c)
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
		if err != nil || kindOfJSON(raw) != '{' || handCheckJSON(raw) != nil {
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

// handFromAttrs checks the required attributes and fills the typed fields.
func (ev *CloudEvent) handFromAttrs(c *ceCollector) {
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

// handUnmarshalObject decodes body, which must be one JSON object, into v.
func handUnmarshalObject(body []byte, v any) error {
	if kindOfJSON(body) != '{' {
		return fmt.Errorf("%w: body must be a JSON object", events.ErrMalformed)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %v", events.ErrMalformed, err)
	}
	return nil
}

// handCheckJSON returns an error wrapping events.ErrMalformed unless b is
// valid JSON.
func handCheckJSON(b []byte) error {
	if !json.Valid(b) {
		return fmt.Errorf("%w: data is not valid JSON", events.ErrMalformed)
	}
	return nil
}

// handPercentDecode undoes the percent-encoding the HTTP binding applies to
// ce-* header values; a malformed escape is kept as is.
func handPercentDecode(s string) string {
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

// HandDecodeCloudEvents exposes the hand decoder to the external tests.
var HandDecodeCloudEvents = handDecodeCloudEvents
