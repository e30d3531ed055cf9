#!/usr/bin/env bash
# Builds the guest with Debian's toolchain (rustc-web, cargo-web, rust-web-src), which
# ships the standard library's source that -Zbuild-std needs. Extra arguments go to
# cargo: `scripts/build-guest.sh clippy -- -D warnings` runs clippy instead.
#
# After a build it checks the ring-3 programs: no call or jump from the `.user`
# section may leave it (a ring-3 program cannot run the kernel's code).
set -euo pipefail
cd "$(dirname "$0")/../guest"
cmd=${1:-build}
shift || true
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
/usr/bin/cargo "$cmd" --release --quiet "$@"
[ "$cmd" = build ] || exit 0
elf=target/i686-none/release/guest
read -r start size < <(objdump -h "$elf" | awk '$2 == ".user" { print $4, $3 }')
objdump -d -j .user "$elf" | perl -ne '
    BEGIN { ($s, $n) = (hex(shift), hex(shift)); }
    next unless /\t(call|jmp|j[a-z]+)\s/;
    if (/\*/) { print "indirect branch in .user: $_"; $bad = 1; next }
    if (/\s([0-9a-f]+) </) { my $t = hex($1); if ($t < $s || $t >= $s + $n) { print "branch out of .user: $_"; $bad = 1 } }
    END { exit($bad ? 1 : 0) }' "$start" "$size" || { echo "build-guest: the user programs call kernel code (see above)" >&2; exit 1; }
