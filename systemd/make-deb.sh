#!/bin/sh
# Builds target/deb/bsc_VERSION_ARCH.deb from an already built binary with dpkg-deb.
# Usage: make-deb.sh ARCH VERSION   (run by `make deb ARCH=...`)
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
root=target/deb/bsc_${version}_${arch}
rm -rf "$root"
make --no-print-directory install BIN="$bin" DESTDIR="$PWD/$root" PREFIX=/usr UNITDIR=/lib/systemd/system >/dev/null
mkdir -p "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
{
  echo "Package: bsc"
  echo "Version: $version"
  echo "Architecture: $arch"
  echo "Maintainer: bsc maintainers <bsc@localhost>"
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
# The unit runs as a DynamicUser: no account to create. Enable, do not start.
cat > "$root/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  systemctl enable bsc.service || true
  sysctl -q -p /usr/lib/sysctl.d/60-bsc.conf || true
fi
exit 0
SH
cat > "$root/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now bsc.service || true
fi
exit 0
SH
cat > "$root/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
SH
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
dpkg-deb --root-owner-group --build "$root" "target/deb/bsc_${version}_${arch}.deb" >/dev/null
echo "target/deb/bsc_${version}_${arch}.deb"
