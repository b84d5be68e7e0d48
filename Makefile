# deepwall — see README.md. Every target works on a fresh Debian machine
# through scripts/dev.sh, which installs what is missing first.

GO      ?= go
BIN     := bin/deepwall
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/deepwall/deepwall/ctl.Version=$(VERSION)
# Privileged tests run as root; they are skipped (or, with
# DEEPWALL_REQUIRE_PRIVILEGED=1, fail) otherwise.
TESTFLAGS ?= -count=1 -timeout 45m

.PHONY: all generate build cni cni-install man deb test vet fuzz-smoke bench bench-harness bench-packages bench-quick bench-smoke detect demo check-generate clean

all: build

## generate: rebuild the eBPF objects with bpf2go (needs clang and llvm-strip),
## and the Kubernetes API's deep copies and CRD manifests with controller-gen
generate:
	$(GO) generate ./xdp/... ./bench/refxdp/... ./ctl/k8s/...

## build: the deepwall binary in bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/deepwall

## cni: the chained CNI plugin in bin/ (docs/containers.md, "CNI")
cni:
	$(GO) build -trimpath -o bin/deepwall-cni ./cmd/deepwall-cni

## cni-install: install it in /opt/cni/bin and print its conflist entry
cni-install: cni
	bin/deepwall-cni install

## man: the manual pages (section 8) of every command, generated from the
## command tree, in man/ (shell completion: deepwall completion bash|zsh|fish)
man: build
	$(BIN) man --dir man

## deb: the Debian package bin/deepwall_VERSION_ARCH.deb (nfpm, a Go tool of
## this module; deploy/deb/nfpm.yaml): binary, systemd unit, defaults,
## logrotate, the API policy, man pages, shell completions, maintainer scripts
DEB_STAGE   := bin/deb-stage
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
DEB_VERSION ?= 0.1.0~git$(shell git log -1 --format=%cd.%h --date=format:%Y%m%d 2>/dev/null || echo 0)
deb:
	rm -rf $(DEB_STAGE) && mkdir -p $(DEB_STAGE)/man $(DEB_STAGE)/completion
	$(GO) build -trimpath -buildmode=pie -ldflags '$(LDFLAGS) -s -w' -o $(DEB_STAGE)/deepwall ./cmd/deepwall
	$(DEB_STAGE)/deepwall man --dir $(DEB_STAGE)/man >/dev/null
	gzip -9n $(DEB_STAGE)/man/*.8
	$(DEB_STAGE)/deepwall completion bash > $(DEB_STAGE)/completion/deepwall.bash
	$(DEB_STAGE)/deepwall completion zsh > $(DEB_STAGE)/completion/_deepwall
	$(DEB_STAGE)/deepwall completion fish > $(DEB_STAGE)/completion/deepwall.fish
	sed -e 's/@VERSION@/$(DEB_VERSION)/' -e "s/@DATE@/$$(git log -1 --format=%cD 2>/dev/null || date -R)/" \
		deploy/deb/changelog | gzip -9n > $(DEB_STAGE)/changelog.Debian.gz
	DEB_ARCH=$(DEB_ARCH) DEB_VERSION=$(DEB_VERSION) \
		$(GO) tool nfpm package --config deploy/deb/nfpm.yaml --packager deb --target bin/
	@ls bin/deepwall_*.deb

## vet: static checks
vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

## test: every test (as root, the privileged ones too), then a short run of every fuzz target
test: vet
	$(GO) test $(TESTFLAGS) ./...
	$(MAKE) fuzz-smoke

## fuzz-smoke: each fuzz target for FUZZTIME (default 10s). Go 1.26's fuzz
## coordinator can fail a target with a bare "context deadline exceeded" as
## the time runs out (go.dev/issue/75804, fixed in Go 1.27): such a failure
## that wrote no failing input is run once more; any other failure stops.
FUZZTIME ?= 10s
fuzz-smoke:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) && continue; \
			if echo "$$out" | grep -q '^    context deadline exceeded$$' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "fuzz $$pkg $$f: the coordinator's deadline race (go.dev/issue/75804), no failing input: once more"; \
				out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) && continue; \
			fi; \
			echo "$$out" | tail -40; exit 1; \
		done; \
	done

## bench: the harness (bench/, every scenario, 5 rounds of 10 s: about an hour;
## results in bench/results/<date>-<host>.{json,md,png}), then every package's own
## Go benchmarks (micro-benchmarks and dataplane/refxdp experiments, printed only)
bench: bench-harness bench-packages

bench-harness:
	DEEPWALL_BENCH_MODE=full $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 240m ./bench

bench-packages:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 120m $$($(GO) list ./... | grep -v '/bench$$')

## bench-quick: the harness only, 3 rounds of 2 s (under 10 minutes on 2 cores),
## results in bench/results/
bench-quick:
	DEEPWALL_BENCH_MODE=quick $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./bench

## bench-smoke: every benchmark once with tiny sizes (the harness writes to a
## temporary directory), so that none of them rots; for CI
bench-smoke:
	DEEPWALL_BENCH_MODE=smoke DEEPWALL_BENCH_ROUNDS=1 DEEPWALL_BENCH_DURATION=1s \
		$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

## detect: the detection harness (bench/detect): the CRS regression suite and a
## benign corpus through deepwall (default pack, imported CRS) and Coraza v3;
## tables on stdout and in bench/detect/out/detect.{md,json}. As root it also
## runs the suite through the live inline path (bench/detect/out/live.json).
detect:
	$(GO) run ./bench/detect/cmd/detect -out bench/detect/out
	@if [ "$$(id -u)" = 0 ]; then DEEPWALL_REQUIRE_PRIVILEGED=1 DETECT_LIVE_OUT=$(CURDIR)/bench/detect/out/live.json \
		$(GO) test -count=1 -timeout 20m -run TestPrivilegedDetectLive -v ./bench/detect | grep -v '^=== RUN'; fi

## demo: build deepwall and run it inline in a namespace topology
demo: build
	scripts/demo.sh $(BIN)

## check-generate: fail when regenerated eBPF objects or CRDs differ from the committed ones
check-generate: generate
	git diff --exit-code -- xdp/ bench/ ctl/k8s/ deploy/kubernetes/crds/ || { echo "generated files are stale: run make generate and commit"; exit 1; }

clean:
	rm -rf bin/ man/
