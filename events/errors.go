package events

import (
	"errors"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by errors for bodies that are not JSON (including
// invalid UTF-8 and unpaired UTF-16 surrogate escapes), or not an object or
// an array of objects.
var ErrMalformed = errors.New("malformed JSON")

// ErrInvalid is wrapped by Decode's errors for a stored message that fails
// validation. *ValidationError also matches errors.Is(err, ErrInvalid).
var ErrInvalid = errors.New("invalid event")

// FieldError names one problem with one field of one event.
type FieldError struct {
	// Index is the event's position in the request (0 for a single event).
	Index int `json:"index"`
	// Field is a JSON-path-like name such as "contact_id",
	// "patch.phoneNumbers[2]" or "patch.customFields.industry"; it is ""
	// for problems with the batch as a whole.
	Field string `json:"field"`
	// Reason is human readable, e.g. "must be at most 100 characters".
	Reason string `json:"reason"`
}

// String formats f as "[index] field: reason".
func (f FieldError) String() string {
	var b strings.Builder
	b.WriteByte('[')
	b.WriteString(strconv.Itoa(f.Index))
	b.WriteString("] ")
	if f.Field != "" {
		b.WriteString(f.Field)
		b.WriteString(": ")
	}
	b.WriteString(f.Reason)
	return b.String()
}

// ValidationError is returned when one or more events are invalid. Errors is
// sorted by Index then Field; problems on the same field keep the order in
// which they were found.
type ValidationError struct {
	Errors []FieldError
}

// maxErrorsInMessage bounds how many problems Error spells out.
const maxErrorsInMessage = 10

// Error lists the first few problems.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalid.Error())
	b.WriteString(": ")
	for i, f := range e.Errors {
		if i == maxErrorsInMessage {
			b.WriteString("; and ")
			b.WriteString(strconv.Itoa(len(e.Errors) - i))
			b.WriteString(" more")
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	return b.String()
}

// Is reports whether target is ErrInvalid, so that errors.Is(err, ErrInvalid)
// holds for every *ValidationError.
func (e *ValidationError) Is(target error) bool {
	return target == ErrInvalid
}

// collector accumulates the problems of one event.
type collector struct {
	index int
	errs  []FieldError
}

// add records one problem.
func (c *collector) add(field, reason string) {
	c.errs = append(c.errs, FieldError{Index: c.index, Field: field, Reason: reason})
}
