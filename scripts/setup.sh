#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and run everything (idempotent):
# - the guest's toolchain: Debian's rustc-web/cargo-web with the standard library's
#   source (rust-web-src) and clippy;
# - QEMU (qemu-system-x86_64 for the appliance, qemu-system-i386 for bare runs),
#   busybox-static, cpio, kmod, xz-utils, and gdb (for `vmm run --gdb` and its test);
# - Debian's kernel (vmlinux and the kvm/kvm_amd modules) for the QEMU-hosted
#   appliance, under .cache/appliance/kernel;
# - Debian's 32-bit PAE Linux (linux-image-686-pae, i386) and a static i386
#   busybox for `vmm run --linux`, under .cache/linux (scripts/linux-initrd.sh
#   makes an initramfs of the busybox and a script).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { echo "setup: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

packages=(rustc-web cargo-web rust-web-src rust-web-clippy qemu-system-x86 busybox-static cpio kmod xz-utils ca-certificates python3 binutils gdb)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null || ! cargo --version >/dev/null 2>&1; then
    log "no host Rust toolchain (cargo) on PATH: install rustup's stable toolchain"
    exit 1
fi
for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1 || true
done

kdir="$root/.cache/appliance/kernel"
if [ ! -s "$kdir/vmlinux" ] || [ ! -s "$kdir/modules/kvm-amd.ko" ]; then
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$pkg" ] || { log "cannot find Debian's kernel package"; exit 1; }
    log "fetching $pkg for the QEMU-hosted appliance"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1)
    dpkg-deb -x "$work"/*.deb "$work/root"
    vmlinuz=$(ls "$work"/root/boot/vmlinuz-* | head -1)
    off=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
    [ -n "$off" ] || { log "no xz payload in $vmlinuz"; exit 1; }
    mkdir -p "$kdir/modules"
    # The uncompressed kernel boots faster under TCG (no decompression).
    tail -c +"$((off + 1))" "$vmlinuz" | xz -dc 2>/dev/null > "$kdir/vmlinux.tmp" || true
    [ -s "$kdir/vmlinux.tmp" ] || { log "could not decompress $vmlinuz"; exit 1; }
    mv "$kdir/vmlinux.tmp" "$kdir/vmlinux"
    for m in irqbypass ccp kvm kvm-amd; do
        f=$(find "$work/root/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
        [ -n "$f" ] || { log "module $m missing from $pkg"; exit 1; }
        case "$f" in
            *.xz) xz -dc "$f" > "$kdir/modules/$m.ko" ;;
            *) cp "$f" "$kdir/modules/$m.ko" ;;
        esac
    done
    echo "$pkg" > "$kdir/PACKAGE"
    log "appliance kernel: $(cat "$kdir/PACKAGE")"
fi
ldir="$root/.cache/linux"
if [ ! -s "$ldir/vmlinuz" ] || [ ! -s "$ldir/busybox" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx i386; then
        log "adding the i386 architecture (for Debian's 686-pae kernel and busybox)"
        as_root dpkg --add-architecture i386
        as_root apt-get update -qq || true
    fi
    lpkg=$(apt-cache depends linux-image-686-pae:i386 | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$lpkg" ] || { log "cannot find Debian's linux-image-686-pae"; exit 1; }
    lpkg=${lpkg%:i386}
    log "fetching $lpkg and busybox-static:i386 for vmm run --linux"
    lwork=$(mktemp -d)
    (cd "$lwork" && apt-get download "$lpkg:i386" busybox-static:i386 >/dev/null 2>&1)
    mkdir -p "$lwork/k" "$lwork/b" "$ldir"
    dpkg-deb -x "$lwork"/linux-image-*.deb "$lwork/k"
    dpkg-deb -x "$lwork"/busybox-static_*.deb "$lwork/b"
    cp "$(ls "$lwork"/k/boot/vmlinuz-* | head -1)" "$ldir/vmlinuz.tmp" && mv "$ldir/vmlinuz.tmp" "$ldir/vmlinuz"
    cp "$(ls "$lwork"/k/boot/config-* | head -1)" "$ldir/config"
    install -m 0755 "$lwork/b/bin/busybox" "$ldir/busybox"
    echo "$lpkg" > "$ldir/PACKAGE"
    rm -rf "$lwork"
    log "Linux for vmm run --linux: $(cat "$ldir/PACKAGE")"
fi
# A copied or `cargo install`ed vmm finds these in the user's data directory.
scripts/data.sh 2>/dev/null
log "ready"
