package processor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// TestStatusClassBuckets: the status_class label of provider requests.
func TestStatusClassBuckets(t *testing.T) {
	for status, want := range map[int]string{
		0: "error", 1: "other", 199: "other", 200: "2xx", 204: "2xx", 299: "2xx", 301: "3xx",
		404: "4xx", 429: "4xx", 500: "5xx", 599: "5xx", 600: "other", 999: "other",
	} {
		if got := processor.StatusClass(status); got != want {
			t.Errorf("StatusClass(%d) = %q, want %q", status, got, want)
		}
	}
}

// TestErrorDescribesTheAnswer: a classified failure's text (the dead
// letter's detail and the log line) names the class, the HTTP status, the
// provider's code and message and the transport error, each only when
// known; ClassOf finds the class through wrapping, and calls anything else
// transient.
func TestErrorDescribesTheAnswer(t *testing.T) {
	for _, tc := range []struct {
		err  *processor.Error
		want string
	}{
		{&processor.Error{Class: processor.ClassPermanent, Status: 404, Code: "NOT_FOUND", Message: "no such contact"}, "permanent: HTTP 404 NOT_FOUND: no such contact"},
		{&processor.Error{Class: processor.ClassTransient, Err: io.ErrUnexpectedEOF}, "transient: unexpected EOF"},
		{&processor.Error{Class: processor.ClassRateLimited, Status: 429}, "rate_limited: HTTP 429"},
		{&processor.Error{Class: processor.ClassCredentials, Status: 401, Message: "bad key"}, "credentials: HTTP 401: bad key"},
		{&processor.Error{Class: processor.Class(9)}, "class(9)"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if got := processor.ClassOf(fmt.Errorf("delivery: %w", tc.err)); got != tc.err.Class {
			t.Errorf("ClassOf(wrapped %q) = %v, want %v", tc.want, got, tc.err.Class)
		}
	}
	if got := processor.ClassOf(errors.New("anything")); got != processor.ClassTransient {
		t.Errorf("ClassOf(unclassified) = %v, want transient", got)
	}
	e := &processor.Error{Class: processor.ClassTransient, Err: io.ErrUnexpectedEOF}
	if !errors.Is(e, io.ErrUnexpectedEOF) {
		t.Error("the transport error is not unwrapped")
	}
}

// TestSendErrorTellsWrittenFromNotWritten: a call that failed after its
// request was written is an unknown outcome, whether or not the caller's
// context has ended (the provider may apply it all the same); one that
// wrote nothing is not sent, or the cancellation when the caller is
// stopping; a refusal at the socket by the request's fence wrote nothing.
func TestSendErrorTellsWrittenFromNotWritten(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	check := func(what string, err error, want processor.Class) {
		t.Helper()
		if got := processor.ClassOf(err); got != want || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ratelimit.ErrFenced) {
			t.Errorf("%s: %v (class %s), want class %s wrapping the cause", what, err, got, want)
		}
	}
	check("written, live context", processor.SendError(ctx, io.ErrUnexpectedEOF, true), processor.ClassUnknown)
	check("not written, live context", processor.SendError(ctx, io.ErrUnexpectedEOF, false), processor.ClassNotSent)
	check("refused by the fence at the socket", processor.SendError(ctx, fmt.Errorf("write: %w", ratelimit.ErrFenced), true), processor.ClassNotSent)
	cancel()
	check("written, cancelled context", processor.SendError(ctx, io.ErrUnexpectedEOF, true), processor.ClassUnknown)
	if err := processor.SendError(ctx, io.ErrUnexpectedEOF, false); !errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("not written with a cancelled context = %v, want context.Canceled", err)
	}
}
