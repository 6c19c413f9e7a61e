package revyops_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
	"github.com/patchbay/patchbay/processor/revyops"
)

func BenchmarkClassify(b *testing.B) {
	now := time.Now()
	notFound := httpcall.Response{Status: 404, Header: http.Header{}, Body: []byte(`{"detail":"Not found."}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := revyops.Classify(notFound, now, nil); processor.ClassOf(err) != processor.ClassPermanent {
			b.Fatal(err)
		}
	}
}
