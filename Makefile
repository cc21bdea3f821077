# Targets named in README.md. `make test` is what CI runs (.ci/run).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/rollbridge/rollbridge-go/internal/version.Version=$(VERSION)
BIN     := bin

# staticcheck at a release that knows Go 1.26. `make staticcheck` installs
# it into the first GOPATH entry's bin when that copy is missing or another
# version, and always runs it by that path, so whatever staticcheck PATH
# finds first is never the one that decides. Release 2026.2.2 is module
# version v0.8.2; go install is given the module version, which resolves
# from the module cache and from proxies that serve only semver versions.
STATICCHECK_VERSION := 2026.2.2
STATICCHECK_MODULE  := honnef.co/go/tools/cmd/staticcheck@v0.8.2
STATICCHECK_BIN     := $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin
STATICCHECK         := $(STATICCHECK_BIN)/staticcheck

.PHONY: all build test check gofmt vet staticcheck fmt race fuzz demo bench chaos deb clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/demo-app ./examples/app

# The benchmark suite (docs/performance.md): installs nginx and wrk if it can,
# builds, runs every section and prints the tables; raw numbers go to
# bench/results/. The proxy under test is pinned to one CPU, the load
# generator and the app to another (BENCH_ARGS=-pin=false: unpinned).
# BENCH_ARGS=-quick for a smoke run; bin/suite -h lists every flag.
bench: build
	$(GO) build -o $(BIN)/ ./bench/cmd/loadgen ./bench/cmd/suite ./bench/cmd/floor
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null 2>&1; } || echo "nginx not available: the nginx column stays empty"
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || echo "wrk not available: the lean section is skipped"
	$(BIN)/suite -bin $(BIN) $(BENCH_ARGS)

# The chaos run (docs/chaos.md): load through the proxy while deploys,
# rollbacks, failed deploys, crashes and SIGSTOP/SIGKILL of the daemon
# happen, with the invariants checked throughout. On loopback only.
# CHAOS_SEED replays a run; CHAOS_ARGS passes more flags (-v, -keep, -only).
# CHAOS_KNOWN names known defects to count instead of failing on (none are
# open; docs/chaos.md, "Known defects").
CHAOS_DURATION ?= 2m
CHAOS_SEED     ?= 0
CHAOS_KNOWN    ?=
CHAOS_ARGS     ?=
chaos: build
	$(GO) build -o $(BIN)/ ./bench/cmd/chaos
	$(BIN)/chaos -bin $(BIN) -duration $(CHAOS_DURATION) -seed $(CHAOS_SEED) -known "$(CHAOS_KNOWN)" $(CHAOS_ARGS)

# The Debian package (docs/systemd.md, "Installing the Debian package"):
# dist/rollbridge_VERSION_ARCH.deb, built with nfpm (pinned in
# packaging/deb/go.mod). DEB_VERSION overrides the version derived from
# git describe (packaging/deb/version.sh); DEB_ARCH cross-builds (a GOARCH).
deb:
	./packaging/deb/build.sh

# The README's main job: daemon + example app + two deploys under load.
demo:
	./scripts/demo.sh

# The one test command: formatting, vet, staticcheck, and every test with
# the race detector.
test: check race

# The static checks, in this order.
check: gofmt vet staticcheck

gofmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# staticcheck's default checks (ST1005 included), tests too.
staticcheck:
	@$(STATICCHECK) -version 2>/dev/null | grep -qF ' $(STATICCHECK_VERSION) ' || \
	  { echo "installing staticcheck $(STATICCHECK_VERSION) into $(STATICCHECK_BIN)"; \
	    GOBIN=$(STATICCHECK_BIN) $(GO) install $(STATICCHECK_MODULE); }
	$(STATICCHECK) ./...

race:
	$(GO) test -race -count=1 -timeout 15m ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Short fuzz runs of the parsers; new corpus entries land in testdata/fuzz.
# FuzzDifferential compares internal/h1's request parser with a real
# net/http Server (docs/performance.md, "A strict request parser");
# FuzzResponseDifferential its answer parser with http.ReadResponse;
# FuzzScanDifferential and FuzzScanResponseDifferential the event-loop
# path's head scanners with both, and
# FuzzFastHeadPolicy and FuzzFastAnswerPolicy its heads for the app and
# for the client with the net/http path's.
fuzz:
	$(GO) test ./pkg/config -run '^$$' -fuzz FuzzDecode -fuzztime 30s
	$(GO) test ./pkg/config -run '^$$' -fuzz FuzzRenderCommand -fuzztime 30s
	$(GO) test ./pkg/control -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 30s
	$(GO) test ./pkg/state -run '^$$' -fuzz FuzzLoad -fuzztime 30s
	$(GO) test ./internal/h1 -run '^$$' -fuzz FuzzDifferential -fuzztime 30s
	$(GO) test ./internal/h1 -run '^$$' -fuzz FuzzResponseDifferential -fuzztime 30s
	$(GO) test ./internal/h1 -run '^$$' -fuzz FuzzScanDifferential -fuzztime 30s
	$(GO) test ./internal/h1 -run '^$$' -fuzz FuzzScanResponseDifferential -fuzztime 30s
	$(GO) test ./pkg/proxy -run '^$$' -fuzz FuzzFastHeadPolicy -fuzztime 30s
	$(GO) test ./pkg/proxy -run '^$$' -fuzz FuzzFastAnswerPolicy -fuzztime 30s

clean:
	rm -rf $(BIN) dist
