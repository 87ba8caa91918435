# dtr: build, images and tests. The version comes from images/VERSION (VERSION links to it).
VERSION := $(shell cat images/VERSION)
GO      ?= go
GOFLAGS_BUILD := -trimpath -ldflags "-s -w"
export CGO_ENABLED := 0

.PHONY: all build images test test-unit security fuzz bench up down fmt vet clean help lab-up lab-down e2e-ha
FUZZTIME ?= 10s

all: build

help:
	@echo "make build   static binaries bin/dtr and bin/dtr-registry"
	@echo "make images  images dtr:$(VERSION) and dtr-registry:$(VERSION), FROM scratch, offline"
	@echo "make test    vet + unit, pseudo-terminal, real-engine, UCP stand-in, conformance and S3 tests, then make security and fuzzing"
	@echo "make security  the attack harness against an in-process replica: one line per probe, held or broke"
	@echo "make lab-up  a 3-engine swarm in network namespaces, HAProxy on 443, S3 and NFS (root); make lab-down removes it"
	@echo "make e2e-ha  the high-availability drills against the lab"

build:
	$(GO) build $(GOFLAGS_BUILD) -o bin/dtr ./cmd/dtr
	$(GO) build $(GOFLAGS_BUILD) -o bin/dtr-registry ./cmd/dtr-registry

# The images start FROM scratch: the build context holds the static binaries,
# the host's CA bundle and the passwd/group files of images/rootfs.
images: build
	rm -rf build/rootfs && mkdir -p build/rootfs/etc/ssl/certs build/rootfs/var/lib/dtr/data build/rootfs/var/lib/dtr/ca build/rootfs/storage build/rootfs/tmp
	chmod 1777 build/rootfs/tmp # restore spools the backup to $$TMPDIR
	cp images/rootfs/etc/passwd images/rootfs/etc/group build/rootfs/etc/
	cp /etc/ssl/certs/ca-certificates.crt build/rootfs/etc/ssl/certs/ca-certificates.crt
	DOCKER_BUILDKIT=0 docker build -q --target dtr --build-arg VERSION=$(VERSION) -t dtr:$(VERSION) .
	DOCKER_BUILDKIT=0 docker build -q --target dtr-registry --build-arg VERSION=$(VERSION) -t dtr-registry:$(VERSION) .
	@docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^dtr(-registry)?:$(VERSION) '

# The README's test command. Engine tests share one local engine: -p 1.
# The attack harness runs once, through make security, not in the ./... run.
test: vet
	$(GO) test -p 1 -count=1 -timeout 30m -skip '^TestAttack' ./...
	$(MAKE) --no-print-directory security
	$(MAKE) --no-print-directory fuzz

# The attack harness (registry/security): one line per probe,
# held or broke, as each ends, then the totals; fails if any probe broke.
# The full test log is kept in build/security.log, the status beside it
# (a pipeline's status is its last command's in sh).
security:
	@mkdir -p build
	@{ $(GO) test -count=1 -p 1 -timeout 10m -run '^TestAttack' -v ./registry/security/ 2>&1; echo $$? > build/security.rc; } \
	  | tee build/security.log | grep -E '^(probe|security|---|FAIL|ok|PASS)'; \
	  rc=$$(cat build/security.rc); \
	  if [ "$$rc" != 0 ]; then echo "make security: failed; the full log is build/security.log"; fi; exit $$rc

# Every fuzz target for FUZZTIME each (short in CI; the corpus is committed).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseScope$$' -fuzztime $(FUZZTIME) ./registry/auth
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./registry/adminapi
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./backup
	$(GO) test -run '^$$' -fuzz '^FuzzManifestPut$$' -fuzztime $(FUZZTIME) ./registry

test-unit:
	$(GO) test -short ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin build

# Side by side with bare Distribution, the limits, the operations and the
# footprint in one run; prints the table and writes docs/benchmarks.md.
bench: images
	scripts/bench.sh

# The quick start: a registry on the local engine; make down removes it.
up: images
	scripts/up.sh

down: build
	scripts/down.sh

# The multi-node lab (root): N engines in network namespaces, HAProxy, S3, NFS.
lab-up: images
	lab/up.sh

lab-down:
	lab/down.sh

# The HA drills, against the lab lab-up made.
e2e-ha:
	DTR_LAB=1 $(GO) test -p 1 -count=1 -timeout 60m -run '^TestHA' -v ./e2e
