package app

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/redact"
)

// AdminConfig secures the admin listeners of ingest and worker (environment
// prefix PATCHBAY_ADMIN_). Their addresses are PATCHBAY_INGEST_ADMIN_ADDR
// and PATCHBAY_WORKER_ADMIN_ADDR.
type AdminConfig struct {
	PProf bool          `envconfig:"PPROF" default:"false" desc:"serve /debug/pprof on the admin listener (off a loopback address only with ADMIN_TOKEN)"`
	Token redact.Secret `envconfig:"TOKEN" desc:"bearer token every admin path requires, /metrics included (empty: none)"`
}

// Validate reports a setting that would expose the admin listener at addr:
// a sample token, or pprof on a non-loopback address without a token.
func (c AdminConfig) Validate(addr string) error {
	if c.Token != "" && (len(c.Token) < 16 || c.Token.Placeholder()) {
		return errors.New("PATCHBAY_ADMIN_TOKEN is a sample value or shorter than 16 characters; generate one (openssl rand -hex 24)")
	}
	if c.PProf && c.Token == "" && addr != "" && !loopback(addr) {
		return fmt.Errorf("PATCHBAY_ADMIN_PPROF on %s, which is not a loopback address, needs PATCHBAY_ADMIN_TOKEN", addr)
	}
	return nil
}

// loopback reports whether addr (host:port) only listens on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NewRegistry returns a metrics registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Admin is what an admin listener serves: /metrics, /debug/pprof when
// enabled, and /readyz with the reason when Ready is set. It is only ever
// served on the admin address, never on the public ingest port.
type Admin struct {
	Addr     string // "" disables the listener
	Config   AdminConfig
	Registry *prometheus.Registry
	// Ready, if set, serves /readyz with the reason when it fails.
	Ready func(context.Context) error
	// Detail, if set, makes /readyz answer JSON: {"ready", "reason",
	// "detail"} with Detail's value (the worker's per-target state).
	Detail func() any
	// Console, if set, is served at ConsolePath under the same rule as the
	// dead-letter API. It authenticates by itself (a browser cannot send
	// the bearer token: it signs in with the token once and holds a
	// session cookie), so the token check here skips it.
	Console http.Handler
	// DeadLetters, if set, serves the dead-letter admin API under
	// /admin/v1 (see DeadLetterAPI). It is served only behind the admin
	// token, or without one on a loopback address; elsewhere its paths
	// answer 403 saying to set PATCHBAY_ADMIN_TOKEN.
	DeadLetters *dlq.Store
	// Log receives the API's internal errors (nil: none).
	Log *slog.Logger
	// Routes, if set, adds the admin API's routes to the listener's mux,
	// behind the same token (OperatorRoutes).
	Routes func(*http.ServeMux)
}

// apiAllowed reports whether the dead-letter API and the console may be
// served: they change the streams, so off loopback they need the admin
// token.
func (a Admin) apiAllowed() bool {
	return a.Config.Token != "" || loopback(a.Addr)
}

// ConsolePath is where the admin listener serves the web console.
const ConsolePath = "/console/"

// Handler returns the admin listener's handler.
func (a Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{Registry: a.Registry}))
	if a.Config.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if a.Detail != nil {
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			body := struct {
				Ready  bool   `json:"ready"`
				Reason string `json:"reason,omitempty"`
				Detail any    `json:"detail"`
			}{Ready: true, Detail: a.Detail()}
			if a.Ready != nil {
				if err := a.Ready(r.Context()); err != nil {
					body.Ready, body.Reason = false, err.Error()
				}
			}
			w.Header().Set("Content-Type", "application/json")
			if !body.Ready {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			_ = json.NewEncoder(w).Encode(body)
		})
	} else if a.Ready != nil {
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if err := a.Ready(r.Context()); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
				return
			}
			_, _ = io.WriteString(w, "ready\n")
		})
	}
	if a.apiAllowed() {
		if a.DeadLetters != nil {
			DeadLetterAPI{Store: a.DeadLetters, Log: a.Log}.Register(mux)
		}
		if a.Routes != nil {
			a.Routes(mux)
		}
	} else if a.DeadLetters != nil || a.Routes != nil {
		mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, Problem{Type: "about:blank", Title: http.StatusText(http.StatusForbidden), Status: http.StatusForbidden, Instance: r.URL.Path,
				Detail: "the admin API is served off a loopback address only with PATCHBAY_ADMIN_TOKEN set"})
		})
	}
	guarded := a.guard(mux)
	if a.Console == nil {
		return guarded
	}
	top := http.NewServeMux()
	if a.apiAllowed() {
		top.Handle(ConsolePath, a.Console)
	} else {
		top.HandleFunc(ConsolePath, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "the console is served off a loopback address only with PATCHBAY_ADMIN_TOKEN set", http.StatusForbidden)
		})
	}
	top.Handle("/", guarded)
	return top
}

// guard requires the admin token, when one is configured, on every path of h.
func (a Admin) guard(mux http.Handler) http.Handler {
	if a.Config.Token == "" {
		return mux
	}
	want := sha256.Sum256([]byte(a.Config.Token.Reveal()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="patchbay-admin"`)
			writeProblem(w, Problem{Type: "about:blank", Title: http.StatusText(http.StatusUnauthorized), Status: http.StatusUnauthorized,
				Instance: r.URL.Path, Detail: "admin token required: Authorization: Bearer $PATCHBAY_ADMIN_TOKEN"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Serve runs the admin listener until ctx is done.
func (a Admin) Serve(ctx context.Context, log *slog.Logger) error {
	if a.Addr == "" {
		return nil
	}
	if err := a.Config.Validate(a.Addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen: %w", err)
	}
	if (a.DeadLetters != nil || a.Console != nil) && !a.apiAllowed() {
		log.Warn("admin API and console off: the admin listener is not on loopback and PATCHBAY_ADMIN_TOKEN is not set", "addr", a.Addr)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	return Serve(ctx, log, "admin", srv, ln, 2*time.Second)
}

// Serve runs srv on ln until ctx is done, then shuts it down within grace.
func Serve(ctx context.Context, log *slog.Logger, name string, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "server", name, "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if err != nil {
		return fmt.Errorf("%s: shutdown: %w", name, err)
	}
	return nil
}
