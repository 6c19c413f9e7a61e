package app

import (
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/console"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/history"
	"github.com/patchbay/patchbay/stream"
)

// NewConsole returns the web console a worker serves on its admin
// listener at ConsolePath: the dead letters of store (NewDLQStore), the
// state and lag of w's targets, whose consumers read scfg's events stream,
// and each contact's fields and delivery history.
func NewConsole(log *slog.Logger, store *dlq.Store, scfg stream.Config, admin AdminConfig, js jetstream.JetStream, w *processor.Worker) (*console.Console, error) {
	return console.New(console.Config{
		Token:    admin.Token.Reveal(),
		Path:     ConsolePath,
		Letters:  store,
		Targets:  console.WorkerTargets{States: w.States, JS: js, Stream: scfg.EventsStream},
		Contacts: history.NewViewer(js, scfg),
		Log:      log,
	})
}
