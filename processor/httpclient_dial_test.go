//go:build linux

package processor_test

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// providerDial returns the dialer of a provider client (through the wire
// fence's wrapper).
func providerDial(t *testing.T) func(ctx context.Context, network, addr string) (net.Conn, error) {
	t.Helper()
	wf, ok := processor.NewHTTPClient(30*time.Second, 2).Transport.(*ratelimit.WireFencedTransport)
	if !ok {
		t.Fatal("the provider client's transport is not wire-fenced")
	}
	return wf.DialContext
}

// TestProviderConnectionsKeepAlive30s: a provider connection sends TCP
// keep-alives after 30 s idle, not Go's 15 s default. Read from the
// socket (Linux: TCP_KEEPIDLE).
func TestProviderConnectionsKeepAlive30s(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := providerDial(t)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The wire fence wraps the TCP connection in a struct embedding it.
	tc, ok := reflect.ValueOf(c).Elem().FieldByName("Conn").Interface().(*net.TCPConn)
	if !ok {
		t.Fatalf("connection %T does not wrap a *net.TCPConn", c)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); serr == nil {
			idle, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		}
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if on != 1 || idle != 30 {
		t.Fatalf("keep-alive %d after %d s idle, want on after 30 s", on, idle)
	}
}

// TestProviderDialGivesUpAfter5s: a provider that does not answer the
// connection (its SYNs are dropped: here a listener whose accept queue is
// full) costs a dial of 5 s, not the kernel's two minutes of SYN retries.
func TestProviderDialGivesUpAfter5s(t *testing.T) {
	t.Parallel()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // an accept queue of one, never accepted
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue: from then on the kernel drops new SYNs.
	for tries := 0; ; tries++ {
		if tries == 64 {
			t.Fatal("the listener's accept queue never filled")
		}
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			break
		}
		defer c.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	c, err := providerDial(t)(ctx, "tcp", addr)
	took := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatal("dialed a listener whose accept queue is full")
	}
	if took < 4*time.Second || took > 15*time.Second {
		t.Fatalf("dial gave up after %s (%v), want about 5 s", took, err)
	}
}
