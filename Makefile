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
