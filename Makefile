# The commands the README names. Each does its own set-up on a fresh Debian machine with Docker.
CARGO ?= cargo

.PHONY: deps build test demo bench lint fmt fuzz clean

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

## Run every test: unit, in-process, and end to end against real Docker and a real registry.
## (scripts/test.sh builds the test binaries, and with them the pht, pht-hub and pht-station
## executables the end-to-end tests run: one build, with the tests' dependency features.)
test: deps
	CARGO=$(CARGO) scripts/test.sh

## The main job: a local registry, a real train built, pushed, signed, verified and run.
demo: build
	bash examples/demo.sh

## Print the performance figures the issues ask for (release build).
bench: deps
	$(CARGO) build --release --workspace --bins --examples
	./target/release/pht-bench
	./target/release/examples/bench_hub

## Fuzz every parser of untrusted input (fuzz/), FUZZ_SECONDS each; fails on a crash.
FUZZ_SECONDS ?= 60
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .pht-demo
