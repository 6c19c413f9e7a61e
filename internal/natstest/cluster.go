package natstest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/patchbay/patchbay/internal/proc"
)

// Cluster starts a 3-node JetStream cluster named name on loopback, waits
// until it has elected a meta leader, and returns its servers, shut down
// when the test ends.
func Cluster(t testing.TB, name string) []*server.Server {
	t.Helper()
	ports := make([]int, 3)
	var routes []string
	for i := range ports {
		addr, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		ports[i], _ = strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	srvs := make([]*server.Server, len(ports))
	for i := range ports {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
			NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		srvs[i] = srv
	}
	for _, srv := range srvs {
		if !srv.ReadyForConnections(time.Minute) {
			t.Fatalf("%s not ready", srv.Name())
		}
	}
	ctx := Context(t)
	for !slices.ContainsFunc(srvs, (*server.Server).JetStreamIsLeader) {
		if ctx.Err() != nil {
			t.Fatal("the cluster formed no JetStream meta leader")
		}
		time.Sleep(20 * time.Millisecond) // polling the servers' state: nothing to wait on
	}
	return srvs
}
