# Targets named in README.md. `make test` is what CI runs (.ci/run).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/rollbridge/rollbridge-go/internal/version.Version=$(VERSION)
BIN     := bin

.PHONY: all build test check fmt vet race fuzz demo bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/demo-app ./examples/app

# The benchmark suite (docs/performance.md): installs nginx if it can,
# builds, runs every section and prints the table; raw numbers go to
# bench/results/. BENCH_ARGS=-quick for a smoke run.
bench: build
	$(GO) build -o $(BIN)/ ./bench/cmd/loadgen ./bench/cmd/suite
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null 2>&1; } || echo "nginx not available: the nginx column stays empty"
	$(BIN)/suite -bin $(BIN) $(BENCH_ARGS)

# The README's main job: daemon + example app + two deploys under load.
demo:
	./scripts/demo.sh

# The one test command: formatting, vet, and every test with the race detector.
test: check race

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 -timeout 15m ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Short fuzz runs of the parsers; new corpus entries land in testdata/fuzz.
fuzz:
	$(GO) test ./pkg/config -run '^$$' -fuzz FuzzDecode -fuzztime 30s
	$(GO) test ./pkg/control -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 30s

clean:
	rm -rf $(BIN)
