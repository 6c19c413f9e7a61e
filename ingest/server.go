package ingest

import (
	"net/http"
)

// Server returns an http.Server for h with the configured timeouts and
// limits (slow or oversized clients cannot hold the process).
func (h *Handler) Server() *http.Server {
	return &http.Server{
		Addr:              h.cfg.Addr,
		Handler:           h,
		ReadHeaderTimeout: h.cfg.ReadHeaderTimeout,
		ReadTimeout:       h.cfg.ReadTimeout,
		WriteTimeout:      h.cfg.WriteTimeout,
		IdleTimeout:       h.cfg.IdleTimeout,
		MaxHeaderBytes:    h.cfg.MaxHeaderBytes,
	}
}
