#!/usr/bin/env bash
# Windows CI for pagepool: runs the README's test command, `cargo test`, for x86_64-pc-windows-gnu under Wine
# (unit, integration and doc tests; every example is built), then clippy over every target (benches included).
# Called from .ci/run as `bash ci/windows.sh`; see docs/windows.md.
#
# Needs a Debian 12 machine, root (or passwordless sudo) and network: it installs its own toolchain with apt.
# Debian's rustc-web (1.96) ships the library sources, so std is built for the target with -Zbuild-std (through
# RUSTC_BOOTSTRAP=1) and no rustup target is needed; rustup's cargo, if any, is bypassed. Wine 8 lacks
# bcryptprimitives.dll, which Rust's std imports, so a stand-in built from ci/wine/bcryptprimitives.c is put on
# WINEPATH. Everything lands in target/windows (override with CARGO_TARGET_DIR) and a temporary Wine prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\nci/windows.sh: FAILED: %s\n' "$*" >&2
    exit 1
}
start=$(date +%s)

TARGET=x86_64-pc-windows-gnu
PACKAGES=(ca-certificates rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine64)
CARGO=/usr/bin/cargo
WINE=/usr/lib/wine/wine64
WINESERVER=/usr/lib/wine/wineserver64

step "install: ${PACKAGES[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    die "installing packages needs root or passwordless sudo"
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -y -o DPkg::Lock::Timeout=600)
"${sudo[@]}" apt-get "${apt_opts[@]}" update </dev/null || die "apt-get update"
"${sudo[@]}" apt-get "${apt_opts[@]}" install --no-install-recommends "${PACKAGES[@]}" </dev/null ||
    die "apt-get install ${PACKAGES[*]}"
for tool in "$CARGO" /usr/bin/rustc /usr/bin/rustdoc /usr/bin/cargo-clippy x86_64-w64-mingw32-gcc "$WINE" "$WINESERVER"; do
    command -v "$tool" >/dev/null || die "$tool missing after install"
done

# Debian's toolchain first on PATH (cargo finds cargo-clippy and clippy-driver there), and named explicitly.
export PATH="/usr/bin:$PATH"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
unset RUSTUP_TOOLCHAIN RUSTFLAGS RUSTDOCFLAGS
# -Zbuild-std on a stable toolchain.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/windows}"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$WINE"
export CARGO_TERM_COLOR=never RUST_BACKTRACE=1
"$CARGO" --version
"$RUSTC" --version
"$WINE" --version

step "ProcessPrng stand-in DLL (ci/wine/bcryptprimitives.c)"
shim="$CARGO_TARGET_DIR/wine-shim"
mkdir -p "$shim"
x86_64-w64-mingw32-gcc -O2 -Wall -Wextra -Werror -shared -o "$shim/bcryptprimitives.dll" \
    ci/wine/bcryptprimitives.c -ladvapi32
# WINEPATH takes Windows paths; Wine maps the unix root to drive Z:.
export WINEPATH="Z:$(printf '%s' "$shim" | tr '/' '\\')"

step "Wine prefix"
WINEPREFIX=$(mktemp -d "${TMPDIR:-/tmp}/pagepool-wine.XXXXXX")
export WINEPREFIX WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree=;mshtml="
cleanup() {
    "$WINESERVER" -k 2>/dev/null || true
    rm -rf "$WINEPREFIX"
}
trap cleanup EXIT
# Expect one harmless line, 'failed to open L"C:\\windows\\syswow64\\rundll32.exe"': there is no 32-bit Wine.
"$WINE" wineboot -i </dev/null || die "wineboot -i"
"$WINESERVER" -w

# `cargo_x SUBCOMMAND ARGS...`: the target flags go right after the subcommand, before any `--`.
cargo_x() { "$CARGO" "$1" -Zbuild-std --target "$TARGET" "${@:2}"; }

# Exactly the README's test command: the unit tests, tests/*.rs, the doctests (cross-compiled doctests run
# since cargo 1.89: cargo passes the runner to rustdoc as --test-runtool) and a build of every example. The
# examples' unix-only legs (libc's posix_memalign, jemalloc, mimalloc, /proc) are compiled out on Windows.
step "cargo test (the README's test command, under Wine)"
cargo_x test </dev/null

step "figures: tests/windows.rs with --nocapture"
cargo_x test -q --test windows -- --nocapture --test-threads 1 system_figures granularity_cost </dev/null

step "cargo clippy --all-targets -- -D warnings (x86_64-pc-windows-gnu)"
# missing_const_for_thread_local is a false positive on this target: std's thread_local! expands to its OS-key
# implementation here, and clippy then flags initializers that already are `const { .. }` (src/stats.rs). The
# Linux clippy run in .ci/run still checks that lint.
cargo_x clippy --all-targets -- -D warnings -A clippy::missing_const_for_thread_local </dev/null

step "windows: done in $(($(date +%s) - start)) s"
