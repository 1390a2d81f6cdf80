#!/usr/bin/env bash
# Is Cargo.toml's `rust-version` true? Called from .ci/run as `bash ci/msrv.sh`; needs cargo (with clippy) and
# python3, downloads nothing (no older toolchain is installed or fetched).
#
# 1. Dependencies: for each platform below, the library's resolved dependency graph from the committed
#    Cargo.lock (`cargo metadata --locked --all-features --filter-platform`), following normal and build edges
#    from pagepool (never dev-dependencies), and the largest `rust-version` those packages declare. Fails if it
#    is above pagepool's `rust-version`. cfg(loom) dependencies are left out: loom is only for the crate's
#    own model tests (`--cfg loom`), never for users. For information only, the same for the tests, examples
#    and benches (pagepool's dev-dependencies too): they may need a newer Rust than the library.
# 2. The crate itself: clippy's `incompatible_msrv` lint (on by default, so CI's clippy runs already deny a std
#    API newer than `rust-version`) is run once with an MSRV of 1.56 to list the newest std APIs src/ uses on
#    this host, and the largest is printed (and must not be above `rust-version` either). Language features the
#    lint cannot see are listed in the comment above `rust-version` in Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    printf 'ci/msrv.sh: FAILED: %s\n' "$*" >&2
    exit 1
}
command -v python3 >/dev/null || die "python3 is needed to read cargo metadata"

# Linux and Windows (tested), macOS and FreeBSD (the unix path), wasm32 ("anything else": src/sys/other.rs).
PLATFORMS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-pc-windows-gnu x86_64-pc-windows-msvc
    aarch64-apple-darwin x86_64-unknown-freebsd wasm32-unknown-unknown)

declared=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["rust_version"] or "")')
[ -n "$declared" ] || die "Cargo.toml declares no rust-version"

# Prints "<rust-version> <name> <version>" for every package in pagepool's normal/build dependency graph (with
# its dev-dependencies too when the first argument is "dev").
walk='
import json, sys
m = json.load(sys.stdin)
pkgs = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
root = m["resolve"]["root"]
kinds = (None, "build", "dev") if sys.argv[1:] == ["dev"] else (None, "build")
seen, stack = set(), [root]
while stack:
    i = stack.pop()
    for d in nodes[i]["deps"]:
        ok = kinds if i == root else (None, "build")
        if any(k["kind"] in ok for k in d["dep_kinds"]) and d["pkg"] not in seen:
            seen.add(d["pkg"])
            stack.append(d["pkg"])
for i in sorted(seen, key=lambda i: pkgs[i]["name"]):
    p = pkgs[i]
    print(p["rust_version"] or "0", p["name"], p["version"])
'
vkey() { sort -t. -k1,1n -k2,2n -k3,3n; }
all=""
printf '%-26s %-8s %s\n' platform max "packages at the max"
for t in "${PLATFORMS[@]}"; do
    rows=$(cargo metadata --format-version 1 --locked --all-features --filter-platform "$t" | python3 -c "$walk")
    max=$(cut -d' ' -f1 <<<"$rows" | vkey | tail -1)
    printf '%-26s %-8s %s\n' "$t" "$max" "$(awk -v m="$max" '$1 == m {printf "%s %s  ", $2, $3}' <<<"$rows")"
    all+="$rows"$'\n'
done
deps=$(cut -d' ' -f1 <<<"${all%$'\n'}" | vkey | tail -1)
dev=$(cargo metadata --format-version 1 --locked --all-features --filter-platform x86_64-unknown-linux-gnu |
    python3 -c "$walk" dev | vkey | tail -1)

# The crate's own std API floor on this host (clippy reads msrv from clippy.toml in CLIPPY_CONF_DIR first).
conf=$(mktemp -d)
trap 'rm -rf "$conf"' EXIT
echo 'msrv = "1.56.0"' >"$conf/clippy.toml"
touch src/lib.rs # rerun clippy on the crate (its other inputs are unchanged)
own=$(CLIPPY_CONF_DIR="$conf" cargo clippy --lib --all-features --message-format short 2>&1 |
    sed -nE 's/^(src[^ ]*): warning: current MSRV .* stable (in a `const` context )?since `([0-9.]+)`.*/\3 \1/p' |
    vkey | tail -1)
touch src/lib.rs
[ -n "$own" ] || own="1.56.0 (no std API newer than 1.56)"

printf '\ndependencies (all features, every platform above): %s\n' "$deps"
printf 'crate, newest std API in src/ (clippy incompatible_msrv, this host): %s\n' "$own"
printf 'Cargo.toml rust-version: %s\n' "$declared"
printf 'for information, with the dev-dependencies (tests, examples, benches; Linux): %s\n' "$dev"

# `norm 1.65` -> 1.65.0; `newer A B`: is version A above version B?
norm() { awk -F. '{printf "%d.%d.%d", $1, $2, $3}' <<<"$1"; }
newer() {
    local a b
    a=$(norm "$1") b=$(norm "$2")
    [ "$a" != "$b" ] && [ "$(printf '%s\n%s\n' "$a" "$b" | vkey | tail -1)" = "$a" ]
}
if newer "$deps" "$declared"; then
    die "a dependency needs Rust $deps, above rust-version = \"$declared\""
fi
if newer "${own%% *}" "$declared"; then
    die "src/ uses a std API stable since $own, above rust-version = \"$declared\""
fi
echo "ci/msrv.sh: rust-version $declared holds"
