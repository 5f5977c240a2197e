#!/usr/bin/env bash
# Refresh the charting libraries embedded in mmusim's HTML report from npm (versions pinned in package.json and
# package-lock.json). The minified files are committed, so building mmusim needs neither npm nor a network.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
dest=../../src/MmuSim.Cli/Report/assets
mkdir -p "$dest"
cp node_modules/vega/build/vega.min.js node_modules/vega-lite/build/vega-lite.min.js node_modules/vega-embed/build/vega-embed.min.js "$dest/"
for p in vega vega-lite vega-embed; do cp "node_modules/$p/LICENSE" "$dest/$p.LICENSE"; done
ls -l "$dest"
