# bsc: build, test, benchmark.
CARGO ?= cargo

.PHONY: all build release test bench lint fmt clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# What CI runs (see .ci/run): every unit and black-box test.
test:
	$(CARGO) test

# Loopback-only UDP benchmark against a release build; prints a table.
bench:
	$(CARGO) bench --bench udp

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
