#!/usr/bin/env bash
# make down: destroy every replica make up (or anyone) installed on the local
# swarm, forget the trusted CA, and leave the swarm if make up created it.
set -euo pipefail
cd "$(dirname "$0")/.."
state=build/up
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ]; then
	for svc in $(docker service ls -q --filter label=com.docker.dtr.role=registry); do
		id=$(docker service inspect --format '{{index .Spec.Labels "com.docker.dtr.replica"}}' "$svc")
		bin/dtr destroy --ucp-url unix:///var/run/docker.sock --replica-id "$id"
	done
fi
if [ -f "$state/certs-host" ]; then
	rm -rf "/etc/docker/certs.d/$(cat "$state/certs-host")"
fi
if [ -f "$state/swarm-initialised" ]; then
	echo "Leaving the single-node swarm make up created"
	docker swarm leave --force >/dev/null
fi
rm -rf "$state"
