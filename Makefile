# bsc: build, test, benchmark, install, package, cross-compile.
CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# Cross targets: static glibc builds that run on any ARM Linux.
AARCH64 := aarch64-unknown-linux-gnu
ARMV7 := armv7-unknown-linux-gnueabihf
STATIC := -C target-feature=+crt-static
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER ?= aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER ?= arm-linux-gnueabihf-gcc

.PHONY: all build release test bench lint fmt clean install uninstall deb deb-check \
        cross-deps aarch64 armv7 cross cross-test sizes fuzz

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# The README's test command, and what CI runs (see .ci/run): installs what the
# tests need when it is missing (tests/deps.sh), then every unit and black-box test.
test:
	bash tests/deps.sh
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

# Install BIN (default: the native release build) under DESTDIR/PREFIX. An
# existing /etc/bsc/bsc.json is never overwritten. Installing into the running
# system (no DESTDIR) also creates the system user bsc the unit runs as.
BIN ?= target/release/bsc
SYSUSERSDIR ?= /usr/lib/sysusers.d
install:
	@test -x $(BIN) || $(CARGO) build --release
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/bsc
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/bsc|$(PREFIX)/bin/bsc|; s|/etc/bsc/bsc.json|$(SYSCONFDIR)/bsc/bsc.json|' systemd/bsc.service > $(DESTDIR)$(UNITDIR)/bsc.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/bsc.service
	install -D -m 0644 systemd/bsc.sysusers $(DESTDIR)$(SYSUSERSDIR)/bsc.conf
	install -D -m 0644 systemd/60-bsc.conf $(DESTDIR)$(PREFIX)/lib/sysctl.d/60-bsc.conf
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/bsc/README.md
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
	      $(DESTDIR)$(PREFIX)/lib/sysctl.d/60-bsc.conf $(DESTDIR)$(PREFIX)/share/doc/bsc/README.md
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

# Cross toolchains: rustup targets and Debian's cross linkers and qemu-user.
cross-deps:
	rustup target add $(AARCH64) $(ARMV7)
	command -v aarch64-linux-gnu-gcc >/dev/null && command -v arm-linux-gnueabihf-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user; }

aarch64:
	RUSTFLAGS="$(STATIC)" $(CARGO) build --profile arm --target $(AARCH64)

armv7:
	RUSTFLAGS="$(STATIC)" $(CARGO) build --profile arm --target $(ARMV7)

cross: aarch64 armv7

# The black-box smoke test (tests/smoke.rs) against each ARM binary, under qemu-user.
cross-test: cross
	BSC_SMOKE_BIN=$(CURDIR)/target/$(AARCH64)/arm/bsc BSC_SMOKE_RUNNER=qemu-aarch64 $(CARGO) test --test smoke
	BSC_SMOKE_BIN=$(CURDIR)/target/$(ARMV7)/arm/bsc BSC_SMOKE_RUNNER=qemu-arm $(CARGO) test --test smoke

sizes:
	@for f in target/release/bsc target/$(AARCH64)/arm/bsc target/$(ARMV7)/arm/bsc; do \
	  test -f $$f && printf '%-50s %8d bytes  %s\n' $$f $$(stat -c %s $$f) "$$(file -b $$f | cut -d, -f1-2)"; done; true

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
