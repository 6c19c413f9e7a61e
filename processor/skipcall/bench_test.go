package skipcall_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
	"github.com/patchbay/patchbay/processor/skipcall"
)

func BenchmarkClassify(b *testing.B) {
	now := time.Now()
	ok := httpcall.Response{Status: 200, Header: http.Header{"X-Ratelimit-Remaining": {"42"}, "X-Ratelimit-Reset": {"1800000042"}}, Body: []byte(`{}`)}
	limited := httpcall.Response{Status: 429, Header: http.Header{"X-Ratelimit-Reset": {"1800000042"}}, Body: []byte(`{"error":{"code":"RATE_LIMIT_EXCEEDED","message":"slow down","status":429}}`)}
	b.Run("200", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := skipcall.Classify(ok, now, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("429", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := skipcall.Classify(limited, now, nil); processor.ClassOf(err) != processor.ClassRateLimited {
				b.Fatal(err)
			}
		}
	})
}
