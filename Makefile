# vnetd — build, test and demo entry points.
# `make test` is what CI runs (via .ci/run); run it as root on Debian.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
FUZZTIME ?= 20s
TESTFLAGS ?=
BINDIR := bin

export GO FUZZTIME

# libvirt's conformance corpus lives beside the repo in shared/; it is read in
# place, never copied. A value set by the user wins; the tests have their own
# default too.
ifeq ($(origin VNETD_LIBVIRT_TESTDATA),undefined)
  ifneq ($(wildcard $(CURDIR)/../shared/conformance/libvirt/.),)
    export VNETD_LIBVIRT_TESTDATA := $(abspath $(CURDIR)/../shared/conformance/libvirt)
  endif
endif

# Run the rest of the recipe line only when ./... holds at least one Go
# package. An empty tree is tolerated; a go list failure is not.
need_pkgs = pkgs=$$($(GO) list -e ./... 2>/dev/null) || { $(GO) list -e ./...; exit 1; }; if [ -z "$$pkgs" ]; then echo "no Go packages yet: skipping $(1)"; exit 0; fi

.PHONY: all build test demo bench fuzz lint deps clean

all: build

build:
	$(GO) build ./...
	@mkdir -p $(BINDIR)
	@for d in cmd/*/; do \
	  d=$${d%/}; \
	  if ls "$$d"/*.go 2>/dev/null | grep -qv '_test\.go$$'; then \
	    echo "$(GO) build -o $(BINDIR)/$${d#cmd/} ./$$d"; \
	    $(GO) build -o "$(BINDIR)/$${d#cmd/}" "./$$d"; \
	  else \
	    echo "skipping ./$$d: no Go files yet"; \
	  fi; \
	done

test: deps
	@$(call need_pkgs,go vet and go test); \
	echo "$(GO) vet ./..."; $(GO) vet ./...; \
	echo "$(GO) test -race -count=1 $(TESTFLAGS) ./..."; \
	$(GO) test -race -count=1 $(TESTFLAGS) ./...; \
	echo "== libvirt conformance (corpus: $${VNETD_LIBVIRT_TESTDATA:-../shared/conformance/libvirt})"; \
	$(GO) test -count=1 -run '^TestConformance' -v ./conf ./dataplane/firewall | grep -E '^(networkxml2|networkport|relaxng)' \
	  || echo "no conformance figures: the libvirt corpus is not there (set VNETD_LIBVIRT_TESTDATA)"

lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt -l reports unformatted files:"; echo "$$out"; exit 1; fi
	@$(call need_pkgs,go vet); echo "$(GO) vet ./..."; $(GO) vet ./...

bench:
	@$(call need_pkgs,go benchmarks); \
	$(GO) test -run='^$$' -bench=. -benchmem $(TESTFLAGS) ./...
	@for s in bench/*.sh; do \
	  [ -f "$$s" ] && [ -x "$$s" ] || continue; \
	  echo "== $$s"; "./$$s"; \
	done

fuzz:
	./scripts/fuzz.sh

demo:
	./scripts/demo.sh

deps:
	./scripts/deps.sh

clean:
	rm -rf $(BINDIR)
