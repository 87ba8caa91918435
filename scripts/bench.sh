#!/bin/bash
# make bench: dtr side by side with bare Distribution, the machine's limits,
# the operations, the footprint and backup/restore at scale, in one run.
# Prints the table and writes docs/benchmarks.md. No assertion on times.
# DTR_SCALE_REPOS / DTR_SCALE_TAGS / DTR_SCALE_USERS shrink the scale part
# (default 10,000 x 5 and 1,000, which takes about 15 minutes here).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date -u '+%Y-%m-%d %H:%M UTC')
failed=0
# part NAME FILE CMD...: runs one part; a part that fails leaves a line in
# the report instead of its table, and make bench fails at the end.
part() {
	local name=$1 file=$2
	shift 2
	echo "bench: $name" >&2
	if ! "$@" >&2; then
		printf '## %s\n\nThis part failed in this run (see the output of make bench).\n' "$name" > "$file"
		failed=1
	fi
}
part "data path and limits" "$tmp/data.md" go test -count=1 -timeout 60m -run '^TestBenchReport$' ./registry -bench-report="$tmp/data.md"
part "operations and footprint" "$tmp/ops.md" env DTR_BENCH_OPS="$tmp/ops.md" go test -count=1 -timeout 30m -run '^TestOpsBench$' ./e2e
part "online garbage collection" "$tmp/gc.md" env DTR_GC_BENCH=1 DTR_BENCH_GC="$tmp/gc.md" go test -count=1 -p 1 -timeout 30m -run '^TestGCMeasure$' ./registry
part "backup and restore at scale" "$tmp/scale.md" env DTR_SCALE=1 DTR_BENCH_SCALE="$tmp/scale.md" go test -count=1 -timeout 90m -run '^TestBackupRestoreScale$' ./e2e
part "backup and restore with images" "$tmp/images.md" env DTR_DR_IMAGES_MB=256 DTR_BENCH_IMAGES="$tmp/images.md" go test -count=1 -timeout 30m -run '^TestDisasterRecoveryImages$' ./e2e
if [ -e /run/dtr-lab/up ]; then
	part "through the lab's load balancer" "$tmp/lab.md" env DTR_LAB=1 DTR_BENCH_LAB="$tmp/lab.md" go test -count=1 -timeout 30m -run '^TestHABench$' ./e2e
else
	printf '## Through the lab'"'"'s load balancer\n\nNot measured in this run: the lab was not up (make lab-up before make bench adds these rows).\n' > "$tmp/lab.md"
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
{
	echo "# Benchmarks"
	echo
	echo "Measured by \`make bench\` (scripts/bench.sh) on $(nproc) × $cpu, $mem, $(uname -sr), Docker $(docker version --format '{{.Server.Version}}'), $(go version | cut -d' ' -f3), commit $(git rev-parse --short HEAD), started $start."
	echo "Every number comes from this one run on this one machine; compare ratios, not absolute times."
	echo
	cat "$tmp/data.md"
	echo
	cat "$tmp/ops.md"
	echo
	cat "$tmp/scale.md"
	echo
	cat "$tmp/images.md"
	echo
	cat "$tmp/gc.md"
	echo
	cat "$tmp/lab.md"
	echo
	cat docs/benchmark-notes.md
} > docs/benchmarks.md
cat docs/benchmarks.md
exit "$failed"
