#!/usr/bin/env bash
# The one script behind the README's two commands (and .ci/run):
#   scripts/dev.sh lab [SCENARIO] [--hold SECONDS]   build and run `keepalived-rs lab`
#   scripts/dev.sh test                              every check and every test
# Each run installs what is missing (Debian packages) and is safe to repeat.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the lab and the tests use: iproute2 (namespaces, veth, bridge),
# nftables (the nftables data plane), iputils-ping and procps (ping, sysctl in tests),
# keepalived (2.2.7, the interop peer), tcpdump and tshark (captures and dissection of adverts),
# openssl (a TLS server with a self-signed certificate for the SSL_GET test), wrk (load through
# the proxy while it reloads), man-db (the man pages render), conntrackd (conntrack_sync: the
# nftables planes' connections across a failover).
PACKAGES="iproute2 nftables iputils-ping procps keepalived tcpdump tshark openssl wrk man-db conntrackd frr"
# The tests that need IPVS boot Debian's kernel under qemu (crates/netlab/src/vm.rs):
# linux-image-amd64 (the kernel and its IPVS modules), qemu-system-x86, ipvsadm (what
# the tests read the kernel's table with), busybox-static (virtme-ng builds the guest's initramfs with it),
# python3-pip (for virtme-ng, from PyPI).
VM_PACKAGES="linux-image-amd64 qemu-system-x86 busybox-static ipvsadm python3-pip"

say() { printf '==> %s\n' "$*" >&2; }

ensure_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "run me as root: the lab and the namespace tests create network namespaces"
    exit 1
  fi
}

ensure_packages() {
  local missing=""
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Do not let the keepalived package start a system keepalived on this machine.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1; fi
    # tshark asks whether non-root users may capture; the answer is no.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    local log
    log=$(mktemp)
    if ! apt-get install -y -qq --no-install-recommends $missing >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      say "apt-get install failed (is another apt or dpkg running?)"
      if [ -n "$made_policy" ]; then rm -f "$policy"; fi
      exit 1
    fi
    rm -f "$log"
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
  fi
}

# virtme-ng (`vng`), which boots the kernel for the IPVS tests.
ensure_vng() {
  # Pinned: netlab::vm passes 1.42's flags (--disable-kvm, -r, --memory, --cpus, --rwdir).
  if ! command -v vng >/dev/null 2>&1; then
    say "installing virtme-ng (PyPI)"
    python3 -m pip install --quiet "virtme-ng==1.42" 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages "virtme-ng==1.42"
    hash -r
  fi
  command -v vng >/dev/null 2>&1 || { say "virtme-ng did not install"; exit 1; }
}

ensure_toolchain() {
  if ! command -v cargo >/dev/null 2>&1; then
    say "cargo not found: install the Rust toolchain (rustup) first"
    exit 1
  fi
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
}

cmd=${1:-}
shift || true
case "$cmd" in
  lab)
    ensure_root; ensure_packages; ensure_toolchain
    cargo build --release --locked -p keepalived-rs
    exec target/release/keepalived-rs lab "$@"
    ;;
  test)
    ensure_root; PACKAGES="$PACKAGES $VM_PACKAGES" ensure_packages; ensure_toolchain; ensure_vng
    # keepalived 2.4.3 (auth_hmac) as a second interop peer, built once from
    # the tarball in ../shared (the tests find it at /opt/keepalived-2.4.3).
    if [ -x ../shared/tools/build-keepalived ]; then
      say "keepalived 2.4.3 (interop peer)"
      ../shared/tools/build-keepalived >/dev/null
    fi
    say "cargo fmt --check"
    cargo fmt --all -- --check
    say "cargo clippy"
    cargo clippy --locked --all-targets -- -D warnings
    # The fuzz targets are a crate of their own (not in the workspace):
    # they must still build against the APIs they exercise.
    say "cargo check (fuzz targets)"
    cargo check --locked --manifest-path fuzz/Cargo.toml --quiet
    say "cargo test"
    # Every test that skips (outside CI: a missing peer, no root) names
    # itself in this file; the list ends the run, so a skip never passes
    # for a pass.
    KRS_SKIPPED="$(mktemp)"
    export KRS_SKIPPED
    status=0
    cargo test --locked --workspace "$@" || status=$?
    if [ -s "$KRS_SKIPPED" ]; then
      say "skipped tests ($(sort -u "$KRS_SKIPPED" | wc -l)), and what each needs:"
      sort -u "$KRS_SKIPPED" | sed 's/^/    /' >&2
    else
      say "no test was skipped"
    fi
    rm -f "$KRS_SKIPPED"
    exit "$status"
    ;;
  *)
    echo "usage: scripts/dev.sh lab [SCENARIO] [--hold SECONDS] | scripts/dev.sh test" >&2
    exit 2
    ;;
esac
