package commands

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

// TestChoosePeerPort: a replica's peer port is the first from 12380 that
// no service publishes on its node and that is not its own HTTP or HTTPS
// port; services on other nodes do not count; a loopback-advertised node
// gets none (its replicas meet on the overlay); a node with every port
// taken is refused with the way out.
func TestChoosePeerPort(t *testing.T) {
	ctx := context.Background()
	e := ucpfake.New("node1", "node2")
	objs := orchestrator.Objects{C: e.Cluster()}
	publish := func(name, node string, port uint32) {
		t.Helper()
		spec := swarm.ServiceSpec{Annotations: swarm.Annotations{Name: name},
			TaskTemplate: swarm.TaskSpec{Placement: &swarm.Placement{Constraints: []string{"node.hostname==" + node}}},
			EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 1, PublishedPort: port, PublishMode: swarm.PortConfigPublishModeHost}}}}
		if _, err := objs.CreateService(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	node1 := ucp.Node{Hostname: "node1", Addr: "10.0.0.11"}
	pick := func(n ucp.Node, avoid ...int) int {
		t.Helper()
		p, err := choosePeerPort(ctx, e.Cluster(), n, avoid...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := pick(node1); p != 12380 {
		t.Errorf("on a free node: %d, want 12380", p)
	}
	publish("a", "node1", 12380)
	publish("b", "node2", 12381)
	if p := pick(node1); p != 12381 {
		t.Errorf("with 12380 taken on node1 (12381 only on node2): %d, want 12381", p)
	}
	if p := pick(node1, 80, 12381); p != 12382 {
		t.Errorf("with the replica's own HTTPS port on 12381: %d, want 12382", p)
	}
	for _, addr := range []string{"127.0.0.1", "0.0.0.0", "::1", ""} {
		if p := pick(ucp.Node{Hostname: "node1", Addr: addr}); p != 0 {
			t.Errorf("node advertising %q: %d, want 0 (reached by name)", addr, p)
		}
	}
	for i := 1; i < peerPortsTried; i++ {
		publish("x"+strings.Repeat("x", i), "node1", uint32(12380+i))
	}
	_, err := choosePeerPort(ctx, e.Cluster(), node1)
	if err == nil || !strings.Contains(err.Error(), "12380-12395") || !strings.Contains(err.Error(), "--ucp-node") {
		t.Errorf("every peer port taken: %v, want a refusal naming the ports and --ucp-node", err)
	}
}
