# Sourced by the *-figures.sh scripts (from the checkout's root): parses
# `--reps N`, checks that the vmm is built, and makes two temporary files that go
# away on exit. Sets reps, vmm, out (the results directory), jobs and lines.
figures_setup() {
    local name=$1
    shift
    reps=3
    if [ "${1:-}" = --reps ]; then reps=$2; fi
    vmm=target/x86_64-unknown-linux-gnu/release/vmm
    [ -x "$vmm" ] || { echo "$name: build first (scripts/build.sh)" >&2; exit 2; }
    out=results
    mkdir -p "$out"
    jobs=$(mktemp) lines=$(mktemp)
    trap 'rm -f "$jobs" "$lines"' EXIT
}
