package commands

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
)

// healthTimeout bounds each wait for a replica to turn healthy.
const healthTimeout = 5 * time.Minute

// applyOptions are the flags of commands that change the cluster in steps.
type applyOptions struct {
	dryRun        bool
	keepOnFailure bool
}

func addApplyFlags(f flags, o *applyOptions) {
	addDryRunFlag(f, &o.dryRun)
	f.Bool(&o.keepOnFailure, "keep-on-failure", false, "When a step fails, leave what this run created in place for inspection instead of removing it", "DTR_KEEP_ON_FAILURE")
}

// addDryRunFlag is --dry-run alone, for commands whose steps cannot be
// undone (remove, destroy), where --keep-on-failure would mean nothing.
func addDryRunFlag(f flags, dryRun *bool) {
	f.Bool(dryRun, "dry-run", false, "Print the steps this command would take, and change nothing", "DTR_DRY_RUN")
}

// newReplicaID returns a random 12-hex-character ID not used by replicas.
func newReplicaID(replicas []orchestrator.Replica) string {
	for {
		b := make([]byte, 6)
		if _, err := rand.Read(b); err != nil {
			panic(err)
		}
		id := hex.EncodeToString(b)
		clash := false
		for _, r := range replicas {
			clash = clash || r.ID == id
		}
		if !clash {
			return id
		}
	}
}

// imageIDs returns the IDs of this version's images on the engine dtr talks
// to. Services run them by ID so that Swarm never tries to pull: the
// offline nodes have them loaded with docker load, which keeps the IDs.
func imageIDs(ctx context.Context, cluster *ucp.Cluster) (registryID, installerID string, err error) {
	reg, err := cluster.Engine.ImageInspect(ctx, images.Registry())
	if err != nil {
		return "", "", fmt.Errorf("image %s is not loaded on %s: load this version's images on every node (docker save $(docker run --rm %s images) | docker load): %v",
			images.Registry(), cluster.Manager.Hostname, images.Installer(), err)
	}
	inst, err := cluster.Engine.ImageInspect(ctx, images.Installer())
	if err != nil {
		return reg.ID, "", nil // node jobs on other nodes will say what is missing
	}
	return reg.ID, inst.ID, nil
}

// checkPorts refuses ports another service already publishes on node.
func checkPorts(ctx context.Context, cluster *ucp.Cluster, node string, httpPort, httpsPort int) error {
	users, err := orchestrator.PortsInUse(ctx, cluster, node, httpPort, httpsPort)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		u := users[0]
		flag := "--replica-https-port"
		if u.Port == httpPort {
			flag = "--replica-http-port"
		}
		return usageErrorf("port %d is already published on node %s by service %s: choose another %s (replicas may use different ports)", u.Port, node, u.Service, flag)
	}
	return nil
}

// reservePorts checks that the replica's HTTP and HTTPS ports are free on
// node and chooses its peer port (choosePeerPort).
func (o *replicaOptions) reservePorts(ctx context.Context, cli *Cli, cluster *ucp.Cluster, node ucp.Node) (int, error) {
	cli.Log.Infof("verifying [%d %d] ports on %s", o.httpPort, o.httpsPort, node.Hostname)
	if err := checkPorts(ctx, cluster, node.Hostname, o.httpPort, o.httpsPort); err != nil {
		return 0, err
	}
	if err := o.checkMetricsPort(ctx, cluster, node.Hostname); err != nil {
		return 0, err
	}
	peer, err := choosePeerPort(ctx, cluster, node, o.httpPort, o.httpsPort, o.metricsPort)
	if err == nil && peer > 0 {
		cli.Log.Infof("the metadata member's peers reach it at %s:%d", node.Addr, peer)
	}
	return peer, err
}

// peerPortsTried is how many host ports from contract.PeerPort up a new
// replica's metadata member may be published on.
const peerPortsTried = 16

// choosePeerPort picks the host port a new replica on node publishes its
// metadata member's raft traffic on: the first from contract.PeerPort up
// that no service publishes there and that is not one of avoid (its own
// HTTP and HTTPS ports). A node that advertises a loopback or unspecified
// address gets 0: the replicas there reach each other by name on the
// overlay, as a container cannot reach another through 127.0.0.1.
func choosePeerPort(ctx context.Context, cluster *ucp.Cluster, node ucp.Node, avoid ...int) (int, error) {
	if ip := net.ParseIP(node.Addr); node.Addr == "" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		return 0, nil
	}
	ports := make([]int, peerPortsTried)
	for i := range ports {
		ports[i] = contract.PeerPort + i
	}
	users, err := orchestrator.PortsInUse(ctx, cluster, node.Hostname, ports...)
	if err != nil {
		return 0, err
	}
	taken := map[int]bool{}
	for _, p := range avoid {
		taken[p] = true
	}
	for _, u := range users {
		taken[u.Port] = true
	}
	for _, p := range ports {
		if !taken[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("ports %d-%d are all published on node %s, and a replica there needs one for its metadata peers: free one (docker service ls shows who publishes them), or place the replica on another node with --ucp-node; nothing was changed",
		ports[0], ports[len(ports)-1], node.Hostname)
}

// nodeAddr finds the address the installer reaches a node's replica at.
func nodeAddr(ctx context.Context, cluster *ucp.Cluster, hostname string) (string, error) {
	nodes, err := cluster.Nodes(ctx)
	if err != nil {
		return "", err
	}
	for _, n := range nodes {
		if n.Hostname == hostname {
			return n.Addr, loopbackInContainer(ctx, cluster, n)
		}
	}
	return "", fmt.Errorf("node %s of the replica is no longer in the swarm", hostname)
}

// isolatedFromHost reports whether the installer runs as a container of
// this engine with a network namespace of its own (docker run without
// --network host): the engine lists a container whose ID starts with our
// hostname, which is what Docker sets it to.
var isolatedFromHost = func(ctx context.Context, cluster *ucp.Cluster) bool {
	host, err := os.Hostname()
	if err != nil || len(host) < 12 {
		return false
	}
	list, err := cluster.Engine.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("id", host))})
	if err != nil || len(list) != 1 {
		return false
	}
	return list[0].HostConfig.NetworkMode != "host"
}

// loopbackInContainer refuses a node that advertises a loopback address
// when the installer runs in a container with its own network: there,
// 127.0.0.1 is the container itself, and every call to the replica would be
// refused.
func loopbackInContainer(ctx context.Context, cluster *ucp.Cluster, n ucp.Node) error {
	if ip := net.ParseIP(n.Addr); ip != nil && ip.IsLoopback() && isolatedFromHost(ctx, cluster) {
		return usageErrorf("node %s advertises %s (a single-node swarm made with --advertise-addr 127.0.0.1), which inside this container is the container itself: add --network host to docker run; nothing was changed", n.Hostname, n.Addr)
	}
	return nil
}

// replicaAPI is a client of an existing replica's admin API, trusting the
// cluster CA kept in the dtr-ca-cert config.
func replicaAPI(ctx context.Context, cluster *ucp.Cluster, o *ucpOptions, r orchestrator.Replica) (orchestrator.ReplicaAPI, error) {
	objs := orchestrator.Objects{C: cluster}
	ca, err := objs.ConfigData(ctx, orchestrator.CACertConfig)
	if err != nil {
		return orchestrator.ReplicaAPI{}, fmt.Errorf("reading the cluster CA: %w", err)
	}
	addr, err := nodeAddr(ctx, cluster, r.Node)
	if err != nil {
		return orchestrator.ReplicaAPI{}, err
	}
	return orchestrator.ReplicaAPI{URL: orchestrator.ReplicaURL(addr, r.HTTPSPort), User: o.username, Password: o.password,
		Client: orchestrator.HTTPSClient(ca)}, nil
}

// apiAndProblems opens the existing replica's admin API and asks it what is
// wrong with the cluster (see clusterProblems).
func apiAndProblems(ctx context.Context, cluster *ucp.Cluster, o *ucpOptions, existing orchestrator.Replica, replicas []orchestrator.Replica, skip ...string) (orchestrator.ReplicaAPI, string, error) {
	api, err := replicaAPI(ctx, cluster, o, existing)
	if err != nil {
		return api, "", err
	}
	problems, err := clusterProblems(ctx, api, existing, replicas, skip...)
	return api, problems, err
}

// clusterProblems asks the existing replica about the cluster and describes
// what is wrong with it, ignoring the replicas in skip: "" when it has quorum
// and every other replica is healthy.
func clusterProblems(ctx context.Context, api orchestrator.ReplicaAPI, existing orchestrator.Replica, replicas []orchestrator.Replica, skip ...string) (string, error) {
	status, err := api.Status(ctx)
	if err != nil {
		return "", fmt.Errorf("asking replica %s about the cluster: %w", existing.ID, err)
	}
	bad := unhealthy(status, replicas, skip...)
	if len(bad) == 0 && status.HasQuorum {
		return "", nil
	}
	return fmt.Sprintf("quorum: %v; unhealthy replicas: %s", status.HasQuorum, strings.Join(bad, ", ")), nil
}

// unhealthy lists the replicas (other than skip) that are not healthy now.
func unhealthy(st contract.ClusterStatus, replicas []orchestrator.Replica, skip ...string) []string {
	var bad []string
	for _, r := range replicas {
		if contains(skip, r.ID) {
			continue
		}
		h, ok := st.ReplicaHealth[r.ID]
		switch {
		case !ok:
			bad = append(bad, r.ID+" (no health report)")
		case h.Stale:
			bad = append(bad, r.ID+" (reported health too long ago)")
		case !h.Healthy:
			bad = append(bad, r.ID+" ("+h.Error+")")
		}
	}
	return bad
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// checkCredentials makes sure the admin's password can be the registry's.
func checkCredentials(username, password string) error {
	if len(password) < 8 {
		return usageErrorf("--ucp-password must have at least 8 characters: on a plain Swarm it becomes the registry admin's password")
	}
	if strings.ToLower(username) != username || strings.ContainsAny(username, " /:@") {
		return usageErrorf("--ucp-username %q: the registry admin's name must be lowercase letters, digits and single '.', '_' or '-'", username)
	}
	return nil
}

// pause waits d or until ctx ends (Ctrl-C).
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// warner passes orchestrator warnings to the log.
func warner(cli *Cli) func(string) { return func(s string) { cli.Log.Warn(s) } }
