package sources

import (
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/patchbay/patchbay/events"
)

// notCloudEvents explains an error of the SDK reading a request that is
// well-formed: a structured or batch body that is valid JSON, or a
// binary-mode event (whose ce-* headers the SDK could not read). What the
// SDK refused is then the meaning, not the syntax, so the answer is a 422
// naming the attribute (RFC 9110 §15.5.21), not a 400. The attribute is
// found by patchbay's own checks of the CloudEvents 1.0 attribute rules;
// when they find nothing, the SDK's reason is reported for the event.
func notCloudEvents(h http.Header, body []byte, binary, batch bool, sdkErr error) error {
	c := &ceCollector{}
	switch {
	case binary:
		m := map[string]json.RawMessage{}
		for k, vs := range h {
			if name, ok := strings.CutPrefix(strings.ToLower(k), "ce-"); ok && name != "" && len(vs) > 0 {
				m[name], _ = json.Marshal(vs[0])
			}
		}
		checkAttrs(c, m)
	case batch:
		var items []json.RawMessage
		_ = json.Unmarshal(body, &items)
		for i, raw := range items {
			c.index = i
			var m map[string]json.RawMessage
			if kindOfJSON(raw) != '{' || json.Unmarshal(raw, &m) != nil {
				c.add("", "must be a JSON object")
				continue
			}
			checkAttrs(c, m)
		}
	default:
		var m map[string]json.RawMessage
		_ = json.Unmarshal(body, &m)
		checkAttrs(c, m)
	}
	if c.errs == nil {
		c.index = 0
		c.add("", "not a CloudEvent: "+sdkErr.Error())
	}
	return &events.ValidationError{Errors: c.errs}
}

// checkAttrs checks one event's attributes against CloudEvents 1.0.
func checkAttrs(c *ceCollector, m map[string]json.RawMessage) {
	str := func(k string) (s string, present, isString bool) {
		raw, ok := m[k]
		if !ok || string(raw) == "null" {
			return "", false, false
		}
		return s, true, json.Unmarshal(raw, &s) == nil
	}
	if s, present, isString := str("specversion"); !present {
		c.add("specversion", "is required")
	} else if !isString || s != "1.0" {
		c.add("specversion", `must be "1.0"`)
	}
	for _, k := range []string{"id", "source", "type"} {
		if s, present, isString := str(k); !present {
			c.add(k, "is required")
		} else if !isString || s == "" {
			c.add(k, "must be a non-empty string")
		}
	}
	for _, k := range []string{"subject", "dataschema", "datacontenttype", "time"} {
		if _, present, isString := str(k); present && !isString {
			c.add(k, "must be a string")
		}
	}
	if s, present, isString := str("time"); present && isString {
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			c.add("time", "must be an RFC 3339 timestamp")
		}
	}
	if s, present, isString := str("datacontenttype"); present && isString {
		if mt, _, err := mime.ParseMediaType(s); err != nil || !jsonMedia(mt) {
			c.add("datacontenttype", "must be a JSON media type")
		}
	}
	if s, present, isString := str("data_base64"); present && (!isString || base64Invalid(s)) {
		c.add("data_base64", "must be base64")
	}
	for k, raw := range m {
		switch k {
		case "specversion", "id", "source", "type", "subject", "dataschema", "datacontenttype", "time", "data", "data_base64":
			continue
		}
		// Extension attributes are strings, integers or booleans.
		if b := kindOfJSON(raw); b == '{' || b == '[' {
			c.add(k, "an extension attribute must be a string, integer or boolean")
		}
	}
}

func base64Invalid(s string) bool {
	_, err := base64.StdEncoding.DecodeString(s)
	return err != nil
}
