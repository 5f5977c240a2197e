#!/usr/bin/env bash
# Instructions per plain anonymous write fault of the model, counted by callgrind on Tier1 code:
# MmuSim.Bench `fault-phases N` warms up on N faults, then this script zeroes the counters, lets it fault N fresh
# pages and dumps them, so startup, JIT and warm-up are not counted.
# (DOTNET_TieredCompilation=0 is not used: under valgrind its FullOpts compiles fall back to MinOpts, which has no
# inlining and inflates the count about 2x.)
# Usage: bench/realfault/instructions.sh [N]   (default 200000)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200000}
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || { echo "instructions.sh: needs valgrind (callgrind)" >&2; exit 2; }
dotnet build bench/MmuSim.Bench -c Release -v q -nologo >/dev/null
dir=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] && cp "$dir"/cg.out.* "$KEEP" 2>/dev/null; rm -rf "$dir"' EXIT
mkfifo "$dir/in"
DOTNET_TieredPGO=0 valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    dotnet bench/MmuSim.Bench/bin/Release/net10.0/MmuSim.Bench.dll fault-phases "$n" <"$dir/in" >"$dir/stdout" 2>"$dir/stderr" &
pid=$!
exec 3>"$dir/in"
wait_for() { until grep -qx "$1" "$dir/stdout"; do kill -0 $pid 2>/dev/null || { cat "$dir/stderr" >&2; exit 3; }; sleep 1; done; }
wait_for warm
sleep 5 # let the background tier-up finish
callgrind_control -z $pid >/dev/null 2>&1
echo >&3
wait_for done
callgrind_control -d $pid >/dev/null 2>&1
echo >&3
exec 3>&-
wait $pid
total=0
for f in "$dir"/cg.out.*; do
    t=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    total=$((total + ${t:-0}))
done
echo "$n faults: $total instructions, $((total / n)) instructions per fault"
