package proc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
)

// BuildNATSServer compiles nats-server, at the version in the go.mod of the
// module at root, into dir and returns the binary's path.
func BuildNATSServer(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "nats-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("proc: build nats-server: %w\n%s", err, out)
	}
	return bin, nil
}

// NATSServer is a nats-server process with JetStream on loopback.
type NATSServer struct {
	*Process
	// URL is the client URL, nats://127.0.0.1:port.
	URL string
	// Monitor is the monitoring endpoint's host:port.
	Monitor string
}

// Msgs returns the messages the server has received from and sent to its
// clients so far (/varz in_msgs and out_msgs): the protocol work a client
// puts on it, counted.
func (s *NATSServer) Msgs(ctx context.Context) (in, out int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Monitor+"/varz", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("proc: varz: %w", err)
	}
	defer resp.Body.Close()
	var v struct {
		In  int64 `json:"in_msgs"`
		Out int64 `json:"out_msgs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, 0, fmt.Errorf("proc: varz: %w", err)
	}
	return v.In, v.Out, nil
}

// StartNATSServer runs the nats-server binary bin with JetStream, storing
// in storeDir, on free loopback ports, and further command-line args, and
// waits until it reports healthy with JetStream enabled or ctx ends.
func StartNATSServer(ctx context.Context, bin, storeDir string, args ...string) (*NATSServer, error) {
	client, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	monitor, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, cport, _ := net.SplitHostPort(client)
	_, mport, _ := net.SplitHostPort(monitor)
	if _, err := strconv.Atoi(cport); err != nil {
		return nil, fmt.Errorf("proc: port %q: %w", cport, err)
	}
	p, err := Start(bin, "nats-server", append([]string{"-a", "127.0.0.1", "-p", cport, "-m", mport, "-js", "-sd", storeDir}, args...), nil)
	if err != nil {
		return nil, err
	}
	if err := WaitHTTP(ctx, "http://"+monitor+"/healthz?js-enabled-only=true", 200); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%w\n%s", err, p.Output())
	}
	return &NATSServer{Process: p, URL: "nats://" + client, Monitor: monitor}, nil
}
