#!/usr/bin/env bash
# Installs what the black-box tests need when it is missing: Debian packages with
# apt-get, AIT's own Python client (ait-core, from PyPI) in a virtual
# environment under target/ait-venv, and moto's S3-compatible server (PyPI's
# moto[server]) in target/moto-venv for the ship recipes (tests/ship_recipes.rs). Run by `make test` (the README's test
# command) and so by .ci/run. Needs root for apt-get; prints what it installs.
set -euo pipefail
cd "$(dirname "$0")/.."

# command → Debian package
need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want tcpdump tcpdump            # the independent PCAP reader
want editcap tshark             # editcap -A/-B, the judge of extracts (tests/extract.rs)
want curl curl                  # the client operators use (README examples)
want promtool prometheus        # the judge of GET /metrics
want ip iproute2                # network namespaces and veth pairs (Ethernet)
want python3 python3            # raw frames, AIT's client
want systemd-analyze systemd    # the unit file checks
want systemd-sysusers systemd   # the user bsc (tests/package.rs)
want make make
want strace strace              # counts file-system calls per new file
want jq jq                      # the README's curl | jq example (tests/readme.rs)
want man man-db                 # bsc(8) renders (tests/package.rs)
want nroff groff-base
want dpkg-deb dpkg              # the .deb, installed in an overlay (tests/package.rs)
want strip binutils             # the test binary stripped before it is packaged (tests/package.rs)
want dpkg-parsechangelog dpkg-dev
want unshare util-linux
want chromium chromium         # the status page in a real browser (tests/ui.rs)
want rsync rsync                # the rsync ship recipe (tests/ship_recipes.rs)
want sha256sum coreutils        # the S3 ship recipe's payload hash
want cc gcc                     # the adjtimex shim and probe (tests/clock.rs)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "tests/deps.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# AIT's client commands (ait-bsc-create-handler, ait-bsc-stop-handler).
venv=target/ait-venv
if [ ! -x "$venv/bin/ait-bsc-create-handler" ]; then
  echo "tests/deps.sh: installing ait-core into $venv"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'ait-core>=3,<4'
fi

# moto_server: a local S3-compatible server for the S3 ship recipe.
venv=target/moto-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "tests/deps.sh: installing moto[server] into $venv"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'moto[server]>=5,<6'
fi
