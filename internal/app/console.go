package app

import (
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/console"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/stream"
)

// NewConsole returns the web console a worker serves on its admin
// listener at ConsolePath: the dead letters of scfg's DLQ stream, and the
// state and lag of w's targets. resolver (may be nil) lets it replay
// unmapped letters.
func NewConsole(log *slog.Logger, scfg stream.Config, admin AdminConfig, js jetstream.JetStream, w *processor.Worker, resolver dlq.Resolver) (*console.Console, error) {
	store := dlq.NewStore(js, scfg.DLQStream, scfg.SubjectPrefix)
	if resolver != nil {
		store.SetResolver(resolver)
	}
	return console.New(console.Config{
		Token:   admin.Token.Reveal(),
		Path:    ConsolePath,
		Letters: store,
		Targets: console.WorkerTargets{States: w.States, JS: js, Stream: scfg.EventsStream},
		Log:     log,
	})
}
