# slideshowd build targets. `make test` is what CI runs (see .ci/run).
GO       ?= go
PKGS     ?= ./...
BENCHTIME ?= 1s

.PHONY: all test fmt-check vet lint build demo bench bench-redis clean

all: test build

## test: gofmt check, go vet, and the race-enabled, shuffled test suite.
test: fmt-check vet
	$(GO) test -race -shuffle=on -timeout 30m $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

## lint: go vet, gofmt -s and staticcheck (fetched through the module proxy).
lint: vet
	@out=$$(gofmt -s -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt -s would simplify:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

## build: a static binary in ./bin.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/slideshowd ./cmd/slideshowd

## demo: the whole pipeline on the built-in emulator and a bbolt file; no keys needed.
demo:
	$(GO) run ./cmd/slideshowd demo

## bench: the hot-path and scheduler benchmarks.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./bench/ ./bucket/

## bench-redis: the old Redis design measured next to Acquire (needs redis-server).
bench-redis:
	./bench/redis.sh

clean:
	rm -rf bin out
