# deepwall — see README.md. Every target works on a fresh Debian machine
# through scripts/dev.sh, which installs what is missing first.

GO      ?= go
BIN     := bin/deepwall
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/deepwall/deepwall/ctl.Version=$(VERSION)
# Privileged tests run as root; they are skipped (or, with
# DEEPWALL_REQUIRE_PRIVILEGED=1, fail) otherwise.
TESTFLAGS ?= -count=1 -timeout 45m

.PHONY: all generate build test vet fuzz-smoke bench bench-quick demo check-generate clean

all: build

## generate: rebuild the eBPF objects with bpf2go (needs clang and llvm-strip)
generate:
	$(GO) generate ./xdp/... ./bench/refxdp/...

## build: the deepwall binary in bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/deepwall

## vet: static checks
vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

## test: every test (as root, the privileged ones too), then a short run of every fuzz target
test: vet
	$(GO) test $(TESTFLAGS) ./...
	$(MAKE) fuzz-smoke

## fuzz-smoke: each fuzz target for FUZZTIME (default 10s)
FUZZTIME ?= 10s
fuzz-smoke:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) || { echo "$$out" | tail -40; exit 1; }; \
		done; \
	done

## bench: the Go benchmarks with figures and ratios
bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

## bench-quick: a short pass over every benchmark
bench-quick:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -timeout 10m ./...

## demo: build deepwall and run it inline in a namespace topology
demo: build
	scripts/demo.sh $(BIN)

## check-generate: fail when regenerated eBPF objects differ from the committed ones
check-generate: generate
	git diff --exit-code -- xdp/ bench/ || { echo "generated eBPF objects are stale: run make generate and commit"; exit 1; }

clean:
	rm -rf bin/
