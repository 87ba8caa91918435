#!/bin/bash
# lab/node.sh kill|start|status N: what the drills do to one node's engine.
# kill is a node dying: SIGKILL to dockerd, its containerd, the shims and
# every container of that node (by its cgroup), nothing left running.
set -euo pipefail
cd "$(dirname "$0")"
. ./env.sh
i=${2:?usage: node.sh kill|start|status N}
case $1 in
kill)
	p=$(cat "$RUN/node$i/docker.pid" 2>/dev/null || true)
	[ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
	pkill -9 -f "$RUN/node$i/" 2>/dev/null || true
	for cg in /sys/fs/cgroup/*/dtr-lab-node$i; do
		[ -d "$cg" ] && find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
	done
	rm -f "$RUN/node$i/docker.pid"
	;;
start)
	start_node "$i"
	wait_node "$i" || { tail -40 "$RUN/node$i/docker.log" >&2; exit 1; }
	;;
status)
	dk "$i" version --format '{{.Server.Version}}'
	;;
*)
	echo "usage: node.sh kill|start|status N" >&2
	exit 2
	;;
esac
