# Shared by up.sh, down.sh and the drills (e2e/lab_test.go reads the same values).
N=${N:-3}
BR=${BR:-brlab}
NET=${NET:-10.231.0}
LAB=${LAB:-/var/lib/dtr-lab}
RUN=${RUN:-/run/dtr-lab}
S3_ACCESS=${S3_ACCESS:-labaccess}
S3_SECRET=${S3_SECRET:-lab-secret-key-0123456789}
VERSION=$(cat ../images/VERSION)
IMAGES="dtr:$VERSION dtr-registry:$VERSION"

node_ip() { echo "$NET.$((10 + $1))"; }
dk() { local i=$1; shift; docker -H "unix://$RUN/node$i/docker.sock" "$@"; }

# start_node launches node i's engine in its namespace: nsenter --net, not
# ip netns exec (which remounts /sys and hides the cgroups from dockerd).
start_node() {
	local i=$1 ns=node$1 ip
	ip=$(node_ip "$1")
	local tls=""
	[ "$i" = 1 ] && tls="-H tcp://$ip:2376 --tlsverify --tlscacert $LAB/tls/ca.pem --tlscert $LAB/tls/server.pem --tlskey $LAB/tls/server-key.pem"
	nsenter --net="/run/netns/$ns" -- unshare --uts --fork sh -c "hostname $ns; \
		DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 exec dockerd --config-file $LAB/$ns.json \
		--data-root $LAB/$ns --exec-root $RUN/$ns/exec --pidfile $RUN/$ns/docker.pid \
		-H unix://$RUN/$ns/docker.sock $tls \
		--cgroup-parent /dtr-lab-$ns --bip 172.30.$i.1/24 --default-address-pool base=10.240.0.0/16,size=24 \
		--swarm-default-advertise-addr $ip" >>"$RUN/$ns/docker.log" 2>&1 &
}

wait_node() {
	for _ in $(seq 1 120); do
		dk "$1" version >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	return 1
}
