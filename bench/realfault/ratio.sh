#!/usr/bin/env bash
# Side-by-side: the real kernel's anonymous write fault (realfault.c) against MmuSim's plain-simulation
# anonymous write fault (MmuSim.Bench quick: best of 3 over a 16 GiB VMA), in the same run, and their ratio.
# Usage: bench/realfault/ratio.sh [MiB]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
cc -O2 -o "$out/realfault" bench/realfault/realfault.c
dotnet build bench/MmuSim.Bench -c Release -v q -nologo >/dev/null
real=$("$out/realfault" "${1:-1024}" 5 | tee /dev/stderr | awk '/^best/ {print $3}')
model=$(dotnet bench/MmuSim.Bench/bin/Release/net10.0/MmuSim.Bench.dll quick | tee /dev/stderr \
        | awk '/^fault/ {print $2}' | sort -g | head -1)
awk -v r="$real" -v m="$model" 'BEGIN { printf "real %.1f ns/fault, model %.1f ns/fault, model is %.1fx faster\n", r, m, r / m }'
