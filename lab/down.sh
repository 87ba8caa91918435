#!/bin/bash
# make lab-down: remove every trace of the lab; safe twice or after a crash.
cd "$(dirname "$0")"
. ./env.sh
start=$(date +%s)
stop_pid() { # pidfile
	local p
	p=$(cat "$1" 2>/dev/null) || return 0
	kill "$p" 2>/dev/null || return 0
	for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.25; done
	kill -9 "$p" 2>/dev/null || true
}
for f in haproxy versitygw ganesha; do stop_pid "$RUN/$f.pid"; done
for i in $(seq 1 "$N"); do stop_pid "$RUN/node$i/docker.pid"; done
# Whatever a killed engine left: containerd, shims, containers (by cgroup).
for i in $(seq 1 "$N"); do
	pkill -9 -f "$RUN/node$i/" 2>/dev/null || true
	for cg in /sys/fs/cgroup/*/dtr-lab-node$i /sys/fs/cgroup/unified/dtr-lab-node$i; do
		[ -d "$cg" ] || continue
		find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
	done
done
sleep 0.5
grep -E " ($RUN|$LAB)[/ ]" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
for i in $(seq 1 "$N"); do
	ip netns del "node$i" 2>/dev/null || true
	ip link del "veth-node$i" 2>/dev/null || true
	for cg in /sys/fs/cgroup/*/dtr-lab-node$i /sys/fs/cgroup/unified/dtr-lab-node$i; do
		[ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
	done
done
ip link del "$BR" 2>/dev/null || true
for CH in DOCKER-USER FORWARD; do
	iptables -D "$CH" -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null || true
	iptables -D "$CH" -i "$BR" ! -o "$BR" -j DROP 2>/dev/null || true
done
rm -rf "$RUN" "$LAB"
left=$(ip netns list 2>/dev/null | grep -c '^node' || true)
echo "lab down in $(($(date +%s) - start)) s; namespaces left: $left"
