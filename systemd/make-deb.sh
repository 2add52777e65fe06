#!/bin/sh
# Builds target/deb/bsc_VERSION_ARCH.deb from an already built binary with dpkg-deb.
# Usage: make-deb.sh ARCH VERSION   (run by `make deb ARCH=...`)
# BSC_DEB_BIN packs another binary than the one the build puts for ARCH (tests/package.rs).
set -eu
arch=$1
version=$2
case "$arch" in
  # The shipped binaries (Makefile: release, aarch64, armv7); the ARM ones are static musl.
  amd64) bin=target/x86_64-unknown-linux-gnu/release/bsc; depends="Depends: libc6 (>= 2.34)" ;;
  arm64) bin=target/aarch64-unknown-linux-musl/arm/bsc; depends="" ;;
  armhf) bin=target/armv7-unknown-linux-musleabihf/arm/bsc; depends="" ;;
  *) echo "unknown ARCH $arch" >&2; exit 2 ;;
esac
bin=${BSC_DEB_BIN:-$bin}
root=target/deb/bsc_${version}_${arch}
rm -rf "$root"
make --no-print-directory install BIN="$bin" DESTDIR="$PWD/$root" PREFIX=/usr UNITDIR=/lib/systemd/system >/dev/null
# What a Debian package adds to `make install`: its copyright, changelog (a native
# package's: changelog.gz) and lintian overrides.
doc="$root/usr/share/doc/bsc"
install -m 0644 systemd/copyright "$doc/copyright"
gzip -9n -c systemd/changelog > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
install -D -m 0644 systemd/bsc.lintian-overrides "$root/usr/share/lintian/overrides/bsc"
if [ "$arch" != amd64 ]; then
  cat >> "$root/usr/share/lintian/overrides/bsc" <<'EOF'

# The ARM builds are linked statically on purpose (docs/arm.md, "Deploying to
# an ARM box"): one binary runs on any ARM Linux, whatever its C library.
bsc: statically-linked-binary [usr/bin/bsc]
EOF
fi
mkdir -p "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
{
  echo "Package: bsc"
  echo "Version: $version"
  echo "Architecture: $arch"
  echo "Maintainer: bsc maintainers <bsc-maintainers@users.noreply.github.com>"
  echo "Installed-Size: $size"
  [ -n "$depends" ] && echo "$depends"
  echo "Section: net"
  echo "Priority: optional"
  echo "Description: binary stream capturer: telemetry streams to rotating PCAP files"
  echo " bsc receives UDP datagrams, TCP byte streams and raw Ethernet frames and"
  echo " writes every unit as one record into PCAP files that rotate on a calendar"
  echo " schedule, managed with curl. Drop-in successor of AIT-Core's ait-bsc."
} > "$root/DEBIAN/control"
echo /etc/bsc/bsc.json > "$root/DEBIAN/conffiles"
# The system user bsc (sysusers.d), the unit enabled but not started, a running
# bsc restarted on upgrade: systemd/bsc.postinst, bsc.prerm, bsc.postrm.
for script in postinst prerm postrm; do
  install -m 0755 "systemd/bsc.$script" "$root/DEBIAN/$script"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort | xargs md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
dpkg-deb --root-owner-group --build "$root" "target/deb/bsc_${version}_${arch}.deb" >/dev/null
echo "target/deb/bsc_${version}_${arch}.deb"
