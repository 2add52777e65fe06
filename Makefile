# bsc: build, test, benchmark, install, package, cross-compile.
CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# The shipped binaries (`make release`, `make aarch64`, `make armv7`) rebuild std
# from source (rust-src) with bsc's own profile, `-Z build-std` on the stable
# toolchain through RUSTC_BOOTSTRAP=1: armv7's musl std is not downloadable, and a
# std without backtrace symbolization (no `backtrace` feature; panics still print
# their message) and with `optimize_for_size` keeps each binary under 1,000,000
# bytes (docs/arm.md, Sizes). `cargo build --release` alone still works, larger.
BUILD_STD := -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE_BIN := target/$(HOST)/release/bsc
MAX_BYTES := 1000000

# Size flags (docs/arm.md, Sizes; neither changes anything bsc prints, and the code
# differs by at most 0.5% of .text): no unwind tables (.eh_frame, .ARM.exidx:
# nothing reads them, as panic = "abort" unwinds nothing and a std without
# `backtrace` ignores RUST_BACKTRACE, std/src/panic.rs get_backtrace_style); on the static ARM
# builds also no PT_GNU_RELRO segment (musl applies RELRO only in its dynamic
# linker, never in a static binary, and GNU ld aligns that segment's end to
# 64 KiB: up to 64 KiB of padding in the file).
SIZE_FLAGS := -C force-unwind-tables=no
ARM_SIZE_FLAGS := $(SIZE_FLAGS) -C link-arg=-Wl,-z,norelro

# Cross targets: static musl builds that run on any ARM Linux.
AARCH64 := aarch64-unknown-linux-musl
ARMV7 := armv7-unknown-linux-musleabihf
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER ?= aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER ?= arm-linux-gnueabihf-gcc
# aarch64: rustup's self-contained musl (crt, libc.a, libunwind.a); the std built
# from source lacks the f128 soft-float routines musl's printf uses: libgcc has them.
AARCH64_FLAGS := -C link-arg=-lgcc $(ARM_SIZE_FLAGS)
# armv7: no rustup std, so no self-contained musl either: Debian's musl-dev:armhf
# (crt1.o, crti.o, crtn.o found through gcc's -B, libc.a through -L) and, as
# libunwind.a, gcc's libgcc_eh.a (the _Unwind_* functions std links).
ARMV7_MUSL := /usr/lib/arm-linux-musleabihf
ARMV7_LINK := $(CURDIR)/target/armv7-musl-link
# Thumb-2 code (`+thumb-mode`, as Debian's armhf and Rust's thumbv7neon targets
# compile everything; rustc warns that the feature is unstable): every ARMv7-A
# core runs it; 16- and 32-bit encodings, 262 KB smaller than A32 (docs/arm.md, Sizes).
ARMV7_FLAGS := -C link-self-contained=no -C link-arg=-B$(ARMV7_MUSL) -L $(ARMV7_MUSL) -L $(ARMV7_LINK) \
	-C target-feature=+thumb-mode $(ARM_SIZE_FLAGS)

.PHONY: all build release rust-src test bench lint debug-hooks-check fmt clean install uninstall deb deb-check \
        cross-deps aarch64 armv7 cross cross-test sizes size-check fuzz

all: build

build:
	$(CARGO) build

# The shipped x86-64 binary: $(RELEASE_BIN) (release profile, std from source).
release: rust-src
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="$(SIZE_FLAGS)" $(CARGO) build --release --target $(HOST) $(BUILD_STD)

rust-src:
	@rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src

# The README's test command, and what CI runs (see .ci/run): installs what the
# tests need when it is missing (tests/deps.sh), then every unit and black-box
# test. With cargo-nextest, when it is installed, every test runs in its own
# process and the test binaries side by side (tests/nextest.toml says how); with
# `cargo test` otherwise, one binary after the other. The same tests either way.
test:
	bash tests/deps.sh
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  echo "$(CARGO) nextest run --config-file tests/nextest.toml && $(CARGO) test --doc"; \
	  $(CARGO) nextest run --config-file tests/nextest.toml && $(CARGO) test --doc; \
	else \
	  echo "$(CARGO) test (cargo-nextest is not installed: one test binary at a time)"; \
	  $(CARGO) test; \
	fi

# Loopback-only benchmark against a release build (tests/bench/, about five
# minutes): sections goals (issue 25's table; its TCP reference is C, compiled
# with CC, default cc), udp, units, large, rcvbuf, extract, each printing its tables and a
# verdict per target. BSC_BENCH_SECTION=goals,rcvbuf runs only those,
# BSC_BENCH_ONLY=text only the rows whose label contains it, BSC_BENCH_RUNS=N
# alternating runs per median (default 3), BSC_BENCH_FS=tmpfs|disk one file system.
bench:
	$(CARGO) bench --bench udp

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	bash .ci/now-check

# The test builds' hooks (BSC_DEBUG_CLOCK with POST /debug/clock, BSC_DEBUG_CRASH)
# are compiled only with debug assertions: fails if the release binary
# ($(RELEASE_BIN), `make release`) holds their names or the route's answer.
debug-hooks-check: release
	@if grep -a -o -e 'BSC_DEBUG_[A-Z]*' -e 'the clock is not driven' $(RELEASE_BIN) | sort -u | grep .; then \
	  echo "debug-hooks-check: $(RELEASE_BIN) holds test-build hooks (above): they must be cfg(debug_assertions)" >&2; exit 1; fi
	@echo "debug-hooks-check: $(RELEASE_BIN) has no BSC_DEBUG_* variable and no /debug/clock route"

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean

# Install BIN (default: the native release build, `make release`) under
# DESTDIR/PREFIX. An existing /etc/bsc/bsc.json is never overwritten. Installing
# into the running system (no DESTDIR) also creates the system user bsc the unit
# runs as.
BIN ?= $(RELEASE_BIN)
SYSUSERSDIR ?= /usr/lib/sysusers.d
install:
	@test -x $(BIN) || $(MAKE) --no-print-directory release
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/bsc
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/bsc|$(PREFIX)/bin/bsc|; s|/etc/bsc/bsc.json|$(SYSCONFDIR)/bsc/bsc.json|' systemd/bsc.service > $(DESTDIR)$(UNITDIR)/bsc.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/bsc.service
	install -D -m 0644 systemd/bsc.sysusers $(DESTDIR)$(SYSUSERSDIR)/bsc.conf
	install -D -m 0644 systemd/60-bsc.conf $(DESTDIR)$(PREFIX)/lib/sysctl.d/60-bsc.conf
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/bsc/README.md
	install -d $(DESTDIR)$(PREFIX)/share/doc/bsc/docs
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/bsc/docs/
	install -d $(DESTDIR)$(PREFIX)/share/doc/bsc/examples
	install -m 0755 systemd/examples/bsc-ship-s3 systemd/examples/bsc-ship-rsync $(DESTDIR)$(PREFIX)/share/doc/bsc/examples/
	install -d $(DESTDIR)$(PREFIX)/share/man/man8
	gzip -9n -c systemd/bsc.8 > $(DESTDIR)$(PREFIX)/share/man/man8/bsc.8.gz
	chmod 0644 $(DESTDIR)$(PREFIX)/share/man/man8/bsc.8.gz
	install -d $(DESTDIR)$(SYSCONFDIR)/bsc
	test -e $(DESTDIR)$(SYSCONFDIR)/bsc/bsc.json || install -m 0644 systemd/bsc.json $(DESTDIR)$(SYSCONFDIR)/bsc/bsc.json
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null 2>&1; then \
	  echo "systemd-sysusers $(SYSUSERSDIR)/bsc.conf"; systemd-sysusers $(SYSUSERSDIR)/bsc.conf; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/bsc $(DESTDIR)$(UNITDIR)/bsc.service \
	      $(DESTDIR)$(SYSUSERSDIR)/bsc.conf $(DESTDIR)$(PREFIX)/share/man/man8/bsc.8.gz \
	      $(DESTDIR)$(PREFIX)/lib/sysctl.d/60-bsc.conf $(DESTDIR)$(PREFIX)/share/doc/bsc/README.md \
	      $(DESTDIR)$(PREFIX)/share/doc/bsc/examples/bsc-ship-s3 $(DESTDIR)$(PREFIX)/share/doc/bsc/examples/bsc-ship-rsync
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/doc/bsc/,$(wildcard docs/*.md))
	-rmdir $(DESTDIR)$(PREFIX)/share/doc/bsc/examples 2>/dev/null
	-rmdir $(DESTDIR)$(PREFIX)/share/doc/bsc/docs 2>/dev/null
	-rmdir $(DESTDIR)$(PREFIX)/share/doc/bsc 2>/dev/null
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/bsc/bsc.json, the captures in /var/lib/bsc and the user bsc (remove them by hand if unwanted)"

# make deb ARCH=amd64|arm64|armhf -> target/deb/bsc_VERSION_ARCH.deb
ARCH ?= amd64
deb:
	@case "$(ARCH)" in \
	  amd64) $(MAKE) --no-print-directory release ;; \
	  arm64) $(MAKE) --no-print-directory aarch64 ;; \
	  armhf) $(MAKE) --no-print-directory armv7 ;; \
	  *) echo "ARCH must be amd64, arm64 or armhf" >&2; exit 2 ;; \
	esac
	sh systemd/make-deb.sh "$(ARCH)" "$(VERSION)"

deb-check: deb
	dpkg-deb --info target/deb/bsc_$(VERSION)_$(ARCH).deb
	dpkg-deb --contents target/deb/bsc_$(VERSION)_$(ARCH).deb

# Cross toolchains: the aarch64 musl rustup target, rust-src, Debian's cross
# linkers, armv7's musl (musl-dev:armhf, multiarch) and qemu-user.
cross-deps: rust-src
	rustup target add $(AARCH64)
	command -v aarch64-linux-gnu-gcc >/dev/null && command -v arm-linux-gnueabihf-gcc >/dev/null && \
	  command -v qemu-aarch64 >/dev/null && test -f $(ARMV7_MUSL)/libc.a || \
	  { dpkg --add-architecture armhf && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user musl-dev:armhf; }

aarch64: rust-src
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="$(AARCH64_FLAGS)" $(CARGO) build --profile arm --target $(AARCH64) $(BUILD_STD)

armv7: rust-src
	mkdir -p $(ARMV7_LINK)
	cp "$$(arm-linux-gnueabihf-gcc -print-file-name=libgcc_eh.a)" $(ARMV7_LINK)/libunwind.a
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="$(ARMV7_FLAGS)" $(CARGO) build --profile arm --target $(ARMV7) $(BUILD_STD)

cross: aarch64 armv7

# The black-box smoke test (tests/smoke.rs) against each ARM binary, under qemu-user.
cross-test: cross
	BSC_SMOKE_BIN=$(CURDIR)/target/$(AARCH64)/arm/bsc BSC_SMOKE_RUNNER=qemu-aarch64 $(CARGO) test --test smoke
	BSC_SMOKE_BIN=$(CURDIR)/target/$(ARMV7)/arm/bsc BSC_SMOKE_RUNNER=qemu-arm $(CARGO) test --test smoke

SHIPPED := $(RELEASE_BIN) target/$(AARCH64)/arm/bsc target/$(ARMV7)/arm/bsc
sizes:
	@for f in $(SHIPPED); do \
	  test -f $$f && printf '%-50s %8d bytes  %s\n' $$f $$(stat -c %s $$f) "$$(file -b $$f | cut -d, -f1-2)"; done; true

# Fails unless each binary in CHECK (default: the two ARM builds, the boxes bsc
# is made for) exists and is at most MAX_BYTES; prints all three sizes first. The
# x86-64 binary is reported, not judged (issue 26: the limit is the ARM boxes').
CHECK ?= target/$(AARCH64)/arm/bsc target/$(ARMV7)/arm/bsc
size-check: sizes
	@fail=0; for f in $(CHECK); do \
	  if ! test -f $$f; then echo "size check: $$f missing" >&2; fail=1; \
	  elif [ $$(stat -c %s $$f) -gt $(MAX_BYTES) ]; then echo "size check: $$f is $$(stat -c %s $$f) bytes, over $(MAX_BYTES)" >&2; fail=1; fi; \
	done; [ $$fail = 0 ] && echo "size check: each of $(words $(CHECK)) binaries at most $(MAX_BYTES) bytes"

# Fuzz every parser for FUZZ_SECONDS each (cargo-fuzz on the stable toolchain,
# which needs RUSTC_BOOTSTRAP for the sanitizer flags). Seeds: tests/fuzz/seeds.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := http_request router forms config pattern
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd tests/fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t && \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir . -O $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
