#!/usr/bin/env bash
# make up: a working registry on the local Docker engine (the embedded default).
# Makes the engine a single-node swarm if it is not in one (and says so),
# installs one replica, trusts its CA in /etc/docker/certs.d and prints how to
# log in. DTR_ADMIN_PASSWORD, DTR_HTTP_PORT and DTR_HTTPS_PORT change the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
state=build/up
mkdir -p "$state" && chmod 700 "$state"

node=$(docker info --format '{{.Name}}')
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
	echo "This Docker engine is not in a swarm: running 'docker swarm init --advertise-addr 127.0.0.1' (a single-node swarm; make down leaves it again)"
	docker swarm init --advertise-addr 127.0.0.1 >/dev/null
	touch "$state/swarm-initialised"
fi

http_port=${DTR_HTTP_PORT:-80}
https_port=${DTR_HTTPS_PORT:-443}
host=localhost
[ "$https_port" = 443 ] || host="localhost:$https_port"

if [ -n "$(docker service ls -q --filter label=com.docker.dtr.role=registry)" ]; then
	echo "dtr is already installed on this swarm (make down removes it)."
else
	if [ -n "${DTR_ADMIN_PASSWORD:-}" ]; then
		password=$DTR_ADMIN_PASSWORD
	else
		password=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
	fi
	umask 077
	printf '%s' "$password" >"$state/admin-password"
	UCP_PASSWORD=$password bin/dtr install --ucp-url unix:///var/run/docker.sock --ucp-username admin \
		--ucp-node "$node" --replica-http-port "$http_port" --replica-https-port "$https_port" \
		--dtr-external-url "$host"
fi

# Trust the cluster CA as an operator would.
mkdir -p "/etc/docker/certs.d/$host"
docker config inspect dtr-ca-cert --format '{{printf "%s" .Spec.Data}}' >"/etc/docker/certs.d/$host/ca.crt"
echo "$host" >"$state/certs-host"

echo
echo "URL: https://$host"
echo "Username: admin"
if [ -f "$state/admin-password" ]; then
	echo "Password: $(cat "$state/admin-password")"
else
	echo "Password: (set when dtr was installed; not known to make up)"
fi
echo "Login: docker login $host -u admin"
echo "CA: /etc/docker/certs.d/$host/ca.crt (curl --cacert it, or curl -k)"
