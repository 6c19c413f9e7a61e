package app

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
)

// listen listens on addr for the server named what, whose address the
// environment variable variable sets; when the address is taken, the error
// says who likely holds it (see explainAddrInUse).
func listen(addr, what, variable string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen: %w", what, explainAddrInUse(err, addr, variable))
	}
	return ln, nil
}

// explainAddrInUse returns err unchanged unless it is "address already in
// use"; then it adds which running 'patchbay dev' listener holds addr (from
// the addresses dev recorded, see FindDev), or that another process does,
// and the variable that moves ours. The result still matches
// syscall.EADDRINUSE.
func explainAddrInUse(err error, addr, variable string) error {
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	if info, _, derr := FindDev(); derr == nil {
		if role := info.holder(addr); role != "" {
			return fmt.Errorf("%w: 'patchbay dev' (pid %d) listens there for its %s; stop it, or set %s to a free address",
				err, info.PID, role, variable)
		}
	}
	return fmt.Errorf("%w: another process listens there (ss -ltnp shows which); set %s to a free address", err, variable)
}

// holder names the listener of d on addr ("ingest", "admin", ...), or ""
// when none of d's addresses is addr.
func (d DevInfo) holder(addr string) string {
	nats := ""
	if u, err := url.Parse(d.NATSURL); err == nil {
		nats = u.Host
	}
	for _, l := range []struct{ role, addr string }{
		{"ingest", d.IngestAddr}, {"admin listener (metrics)", d.AdminAddr}, {"NATS server", nats},
		{"sandbox RevyOps", d.RevyOpsAddr}, {"sandbox Skipcall", d.SkipcallAddr},
	} {
		if sameListenAddr(addr, l.addr) {
			return l.role
		}
	}
	return ""
}

// sameListenAddr reports whether listening on a and on b collide: the same
// port on the same host, or on any host when either is a wildcard (":8080"
// collides with "127.0.0.1:8080").
func sameListenAddr(a, b string) bool {
	ha, pa, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	hb, pb, err := net.SplitHostPort(b)
	if err != nil || pa != pb || pa == "0" {
		return false
	}
	norm := func(h string) string {
		switch h {
		case "", "0.0.0.0", "::":
			return ""
		case "localhost", "::1":
			return "127.0.0.1"
		}
		return h
	}
	ha, hb = norm(ha), norm(hb)
	return ha == "" || hb == "" || ha == hb
}
