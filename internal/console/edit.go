package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
)

// editForm is the edit-and-replay form of one letter: the envelope's id,
// target and contact stay those of the letter (they name the subject it
// goes back to); occurred_at, the structure and each patch field can be
// changed, or a field dropped. A payload that is not an event object at
// all is edited whole, as text.
type editForm struct {
	Raw     bool
	RawText string

	ID, Target, ContactID string
	OccurredAt            string
	Structure             string
	HasStructure          bool
	Fields                []editField

	// Problems are the validation errors not tied to one input; the others
	// are on their inputs (FieldProblems).
	Problems      []string
	FieldProblems map[string]string

	envelope map[string]json.RawMessage
}

// editField is one top-level field of the patch. A string is shown as
// its text; any other value as JSON.
type editField struct {
	Name  string
	Value string
	JSON  bool
	Drop  bool
}

// Multiline reports whether the value wants a textarea (an object or array).
func (f editField) Multiline() bool {
	return f.JSON && (strings.HasPrefix(f.Value, "{") || strings.HasPrefix(f.Value, "["))
}

// Problem returns the validation error of input name ("" if none).
func (f *editForm) Problem(name string) string { return f.FieldProblems[name] }

// newEditForm fills the form with the letter's payload.
func newEditForm(l dlq.Letter) *editForm {
	f := &editForm{FieldProblems: map[string]string{}}
	var env map[string]json.RawMessage
	var patch map[string]json.RawMessage
	if json.Unmarshal(l.Data, &env) != nil || env["patch"] == nil || json.Unmarshal(env["patch"], &patch) != nil || patch == nil {
		f.Raw, f.RawText = true, pretty(l.Data)
		return f
	}
	f.envelope = env
	str := func(k string) string {
		var s string
		if json.Unmarshal(env[k], &s) != nil {
			return string(env[k])
		}
		return s
	}
	f.ID, f.Target, f.ContactID, f.OccurredAt, f.Structure = str("id"), str("target"), str("contact_id"), str("occurred_at"), str("structure")
	f.HasStructure = f.Target == string(events.TargetRevyOps) || f.Structure != ""
	for _, k := range slices.Sorted(maps.Keys(patch)) {
		v := patch[k]
		var s string
		if json.Unmarshal(v, &s) == nil {
			f.Fields = append(f.Fields, editField{Name: k, Value: s})
			continue
		}
		var b bytes.Buffer
		if json.Compact(&b, v) != nil {
			b.Reset()
			b.Write(v)
		}
		f.Fields = append(f.Fields, editField{Name: k, Value: b.String(), JSON: true})
	}
	return f
}

// editFormFrom is the letter's form with the operator's posted values.
func editFormFrom(l dlq.Letter, v url.Values) *editForm {
	f := newEditForm(l)
	if f.Raw {
		f.RawText = v.Get("raw")
		return f
	}
	f.OccurredAt = strings.TrimSpace(v.Get("occurred_at"))
	if f.HasStructure {
		f.Structure = strings.TrimSpace(v.Get("structure"))
	}
	for i := range f.Fields {
		fd := &f.Fields[i]
		fd.Value = v.Get("f." + fd.Name)
		fd.Drop = v.Get("drop."+fd.Name) != ""
	}
	return f
}

// build assembles the event's JSON from the form; ok is false, with the
// problems on the form, when a JSON input does not parse. The event is
// validated by the dlq package's Replay, as ingest validates a webhook.
func (f *editForm) build() ([]byte, bool) {
	if f.Raw {
		return []byte(f.RawText), true
	}
	var patch bytes.Buffer
	patch.WriteByte('{')
	n := 0
	for _, fd := range f.Fields {
		if fd.Drop {
			continue
		}
		val := []byte(fd.Value)
		if fd.JSON {
			if !json.Valid(val) {
				f.FieldProblems["patch."+fd.Name] = "is not valid JSON"
				continue
			}
		} else {
			val, _ = json.Marshal(fd.Value)
		}
		if n > 0 {
			patch.WriteByte(',')
		}
		k, _ := json.Marshal(fd.Name)
		patch.Write(k)
		patch.WriteByte(':')
		patch.Write(val)
		n++
	}
	patch.WriteByte('}')
	if len(f.FieldProblems) > 0 {
		return nil, false
	}
	env := map[string]json.RawMessage{}
	for _, k := range []string{"id", "target", "contact_id"} {
		if v, ok := f.envelope[k]; ok {
			env[k] = v
		}
	}
	at, _ := json.Marshal(f.OccurredAt)
	env["occurred_at"], env["patch"] = at, patch.Bytes()
	if f.Structure != "" {
		s, _ := json.Marshal(f.Structure)
		env["structure"] = s
	}
	b, err := json.Marshal(env)
	if err != nil {
		f.Problems = append(f.Problems, err.Error())
		return nil, false
	}
	return b, true
}

// place puts each validation error next to its input, or among the
// general problems when no input holds that field.
func (f *editForm) place(err error) {
	var ve *events.ValidationError
	if !errors.As(err, &ve) {
		f.Problems = append(f.Problems, err.Error())
		return
	}
	for _, fe := range ve.Errors {
		input := f.inputFor(fe.Field)
		if input == "" {
			msg := fe.Reason
			if fe.Field != "" {
				msg = fe.Field + ": " + fe.Reason
			}
			f.Problems = append(f.Problems, msg)
			continue
		}
		msg := fe.Reason
		if fe.Field != input {
			msg = fe.Field + ": " + fe.Reason
		}
		if prev := f.FieldProblems[input]; prev != "" {
			msg = prev + "; " + msg
		}
		f.FieldProblems[input] = msg
	}
}

// inputFor names the form input a validation error's field belongs to:
// "occurred_at", "structure", "patch.<top-level key>", or "" for none.
func (f *editForm) inputFor(field string) string {
	if f.Raw {
		return ""
	}
	switch field {
	case "occurred_at", "structure":
		return field
	}
	rest, ok := strings.CutPrefix(field, "patch.")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, ".["); i >= 0 {
		rest = rest[:i]
	}
	for _, fd := range f.Fields {
		if fd.Name == rest && !fd.Drop {
			return "patch." + rest
		}
	}
	return ""
}

// pretty indents JSON, or returns data as text when it is not JSON.
func pretty(data []byte) string {
	var b bytes.Buffer
	if json.Indent(&b, data, "", "  ") != nil {
		return string(bytes.ToValidUTF8(data, []byte("\uFFFD")))
	}
	return b.String()
}
