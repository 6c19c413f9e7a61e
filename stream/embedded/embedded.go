// Package embedded runs a JetStream-enabled NATS server inside the process,
// for dev mode, tests and benchmarks. Production binaries never import it:
// they connect to a NATS cluster with package stream.
package embedded

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a JetStream-enabled NATS server running in this process.
type Server struct {
	srv *server.Server
}

// Config configures Run.
type Config struct {
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// Host and Port to listen on; Port 0 picks a free port, -1 also.
	Host string
	Port int
}

// Run starts a JetStream server listening on loopback and waits until it
// accepts connections.
func Run(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("embedded: server needs a store directory")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	opts := &server.Options{
		ServerName: "patchbay-embedded",
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded: server not ready after 10s")
	}
	return &Server{srv: srv}, nil
}

// ClientURL is the URL clients connect to.
func (e *Server) ClientURL() string { return e.srv.ClientURL() }

// Server exposes the underlying server (tests stop and restart it).
func (e *Server) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped.
func (e *Server) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
