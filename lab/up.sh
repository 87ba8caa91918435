#!/bin/bash
# make lab-up: N Docker engines on one machine, each in its own network
# namespace (own address, hostname, data root, containerd), on a bridge
# nothing leaves; a Swarm of one manager and N-1 workers; the dtr images
# loaded into every engine; node1's Engine API on tcp://10.231.0.11:2376 with
# mutual TLS (the UCP/MKE-like path); HAProxy on 443 in TCP passthrough with
# GET /_ping checks; versitygw (S3) and nfs-ganesha on the bridge.
#
# One manager, not three: the drills kill two of three engines, and Swarm's
# own raft would then lose quorum and freeze every service, which is a Swarm
# disaster, not a dtr one. With the manager on node1, killing node2 and node3
# leaves Swarm answering, as UCP's managers would.
set -euo pipefail
cd "$(dirname "$0")"
. ./env.sh
start=$(date +%s)

fail() {
	echo "lab-up: $*" >&2
	for i in $(seq 1 "$N"); do
		[ -f "$RUN/node$i/docker.log" ] && { echo "--- node$i docker.log (last 40 lines)" >&2; tail -40 "$RUN/node$i/docker.log" >&2; }
	done
	for f in haproxy versitygw ganesha; do
		[ -f "$RUN/$f.log" ] && { echo "--- $f.log (last 20 lines)" >&2; tail -20 "$RUN/$f.log" >&2; }
	done
	exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (network namespaces, bridges, iptables)"
for cmd in dockerd docker haproxy versitygw ganesha.nfsd nfs-ls nsenter unshare iptables openssl; do
	command -v "$cmd" >/dev/null || fail "$cmd is missing: apt-get install docker.io haproxy nfs-ganesha nfs-ganesha-vfs libnfs-utils openssl; GOBIN=/usr/local/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"
done
[ -e "$RUN/up" ] && fail "a lab is up already (make lab-down first)"
for img in $IMAGES; do docker image inspect "$img" >/dev/null 2>&1 || fail "image $img is missing: make images"; done
mkdir -p "$RUN" "$LAB" "$LAB/tls" "$LAB/s3" "$LAB/nfs" "$LAB/shared"
chown 10001:10001 "$LAB/shared" # the replica's user: shared host-path storage

# The bridge, and a firewall that lets lab traffic through (br_netfilter
# makes bridged frames traverse FORWARD, which dockerd sets to DROP) and
# keeps it in.
ip link show "$BR" >/dev/null 2>&1 || { ip link add "$BR" type bridge; ip addr add "$NET.1/24" dev "$BR"; ip link set "$BR" up; }
CH=FORWARD; iptables -nL DOCKER-USER >/dev/null 2>&1 && CH=DOCKER-USER
iptables -C "$CH" -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null || iptables -I "$CH" -i "$BR" -o "$BR" -j ACCEPT
iptables -C "$CH" -i "$BR" ! -o "$BR" -j DROP 2>/dev/null || iptables -I "$CH" 2 -i "$BR" ! -o "$BR" -j DROP
echo "$CH" > "$RUN/chain"

# Certificates for node1's mTLS Engine API: a CA, a server cert for the
# manager's address, and the client bundle an operator would have.
(
	cd "$LAB/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=lab-ca -keyout ca-key.pem -out ca.pem 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=node1 -keyout server-key.pem -out server.csr 2>/dev/null
	printf 'subjectAltName=IP:%s.11,DNS:node1\nextendedKeyUsage=serverAuth\n' "$NET" > server.ext
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=admin -keyout key.pem -out client.csr 2>/dev/null
	printf 'extendedKeyUsage=clientAuth\n' > client.ext
	openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile client.ext -out cert.pem 2>/dev/null
	chmod 600 ./*key.pem
)

for i in $(seq 1 "$N"); do
	ns=node$i ip=$(node_ip "$i")
	[ -e "/run/netns/$ns" ] || ip netns add "$ns"
	if ! ip link show "veth-$ns" >/dev/null 2>&1; then
		ip link add "veth-$ns" type veth peer name eth0 netns "$ns"
		ip link set "veth-$ns" master "$BR" up
		ip -n "$ns" addr add "$ip/24" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$ns" link set lo up
		# No default route: a pull or a DNS lookup fails at once instead of leaving.
	fi
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
	mkdir -p "$LAB/$ns" "$RUN/$ns"
	echo '{}' > "$LAB/$ns.json"
	start_node "$i"
done
for i in $(seq 1 "$N"); do
	wait_node "$i" || fail "node$i's engine did not answer within 60 s"
done

# The Swarm, through the Engine API (the docker CLI on each node's socket).
dk 1 swarm init --advertise-addr "$(node_ip 1)" --dispatcher-heartbeat 2s >/dev/null || fail "swarm init"
token=$(dk 1 swarm join-token -q worker)
for i in $(seq 2 "$N"); do
	dk "$i" swarm join --token "$token" "$(node_ip 1):2377" >/dev/null || fail "node$i did not join the swarm"
done

# The images, copied engine to engine (no registry).
docker save $IMAGES > "$LAB/images.tar"
for i in $(seq 1 "$N"); do dk "$i" load -q -i "$LAB/images.tar" >/dev/null || fail "loading images into node$i"; done
rm -f "$LAB/images.tar"

# versitygw: S3 on the bridge; the bucket is a directory of its posix backend.
mkdir -p "$LAB/s3/data/dtr" "$LAB/s3/meta"
ROOT_ACCESS_KEY=$S3_ACCESS ROOT_SECRET_KEY=$S3_SECRET \
	versitygw -q --port "$NET.1:7070" posix --sidecar "$LAB/s3/meta" "$LAB/s3/data" >"$RUN/versitygw.log" 2>&1 &
echo $! > "$RUN/versitygw.pid"

# nfs-ganesha: NFSv4 from userspace (this kernel has no NFS client or server).
sed -e "s#@NET@#$NET#g" -e "s#@EXPORT@#$LAB/nfs#g" ganesha.conf > "$RUN/ganesha.conf"
ganesha.nfsd -F -L "$RUN/ganesha.log" -f "$RUN/ganesha.conf" -p "$RUN/ganesha.pid" >/dev/null 2>&1 &
echo $! > "$RUN/ganesha.pid"

# HAProxy: TCP passthrough on 443, health from each replica's /_ping.
servers=""
for i in $(seq 1 "$N"); do servers+="    server node$i $(node_ip "$i"):443"$'\n'; done
mkdir -p "$RUN/haproxy"
sed -e "s#@RUN@#$RUN#g" -e "s#@NET@#$NET#g" haproxy.cfg > "$RUN/haproxy/haproxy.cfg"
printf '%s' "$servers" >> "$RUN/haproxy/haproxy.cfg"
haproxy -db -f "$RUN/haproxy/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
echo $! > "$RUN/haproxy.pid"

for t in $(seq 1 30); do
	curl -s -m 1 "http://$NET.1:7070/" >/dev/null 2>&1 && [ -S "$RUN/haproxy/admin.sock" ] && break
	sleep 0.5
done
kill -0 "$(cat "$RUN/haproxy.pid")" 2>/dev/null || fail "haproxy did not start"
kill -0 "$(cat "$RUN/versitygw.pid")" 2>/dev/null || fail "versitygw did not start"
kill -0 "$(cat "$RUN/ganesha.pid")" 2>/dev/null || fail "nfs-ganesha did not start"
touch "$RUN/up"
dk 1 node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'
echo "lab up in $(($(date +%s) - start)) s: $N engines ($NET.11-$((10 + N))), manager API tcp://$(node_ip 1):2376 (client bundle $LAB/tls),"
echo "  HAProxy 127.0.0.1:443 and $NET.1:443, S3 http://$NET.1:7070 (bucket dtr), NFS nfs://$NET.1/export; make lab-down removes it"
