package console

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/dlq"
)

// filter is the list's filter form as the operator typed it, so the form
// shows it back unchanged.
type filter struct {
	Target, Contact, Reason, Status, ErrorCode, Since, Until string
	Before                                                   uint64

	status       int
	since, until time.Time
}

// timeLayouts are what the time fields accept: RFC 3339, or the value of
// an <input type="datetime-local"> (taken as UTC).
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"}

// parseFilter reads a filter from a query or form; problems maps a field
// name to what is wrong with it.
func parseFilter(v url.Values) (filter, map[string]string) {
	f := filter{
		Target: strings.TrimSpace(v.Get("target")), Contact: strings.TrimSpace(v.Get("contact")),
		Reason: strings.TrimSpace(v.Get("reason")), Status: strings.TrimSpace(v.Get("status")),
		ErrorCode: strings.TrimSpace(v.Get("error_code")), Since: strings.TrimSpace(v.Get("since")),
		Until: strings.TrimSpace(v.Get("until")),
	}
	problems := map[string]string{}
	if f.Status != "" {
		n, err := strconv.Atoi(f.Status)
		if err != nil || n < 100 || n > 599 {
			problems["status"] = "an HTTP status, 100 to 599"
		}
		f.status = n
	}
	parseTime := func(name, s string) time.Time {
		if s == "" {
			return time.Time{}
		}
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return t
			}
		}
		problems[name] = "a time such as 2026-12-01T09:30 (UTC) or RFC 3339"
		return time.Time{}
	}
	f.since, f.until = parseTime("since", f.Since), parseTime("until", f.Until)
	if !f.since.IsZero() && !f.until.IsZero() && !f.until.After(f.since) {
		problems["until"] = "must be after since"
	}
	if b := v.Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil {
			problems["before"] = "a sequence number"
		}
		f.Before = n
	}
	if len(problems) == 0 {
		if err := f.dlqFilter().Validate(); err != nil {
			problems["filter"] = err.Error()
		}
	}
	if len(problems) == 0 {
		problems = nil
	}
	return f, problems
}

// dlqFilter is the filter as the dlq package's Filter.
func (f filter) dlqFilter() dlq.Filter {
	return dlq.Filter{
		Target: f.Target, ContactID: f.Contact, Reason: dlq.Reason(f.Reason), Status: f.status,
		ErrorCode: f.ErrorCode, Since: f.since, Until: f.until,
	}
}

// values is the filter as form values, without the cursor.
func (f filter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{
		"target": f.Target, "contact": f.Contact, "reason": f.Reason, "status": f.Status,
		"error_code": f.ErrorCode, "since": f.Since, "until": f.Until,
	} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// url is path with the filter and the cursor before (0: none).
func (f filter) url(path string, before uint64) string {
	v := f.values()
	if before != 0 {
		v.Set("before", strconv.FormatUint(before, 10))
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// Hidden returns the filter's fields for hidden inputs of a bulk form.
func (f filter) Hidden() url.Values { return f.values() }

// Query returns the filter as a query string ("" when empty).
func (f filter) Query() string { return f.values().Encode() }
