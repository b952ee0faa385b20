#!/usr/bin/env bash
# npm pack / npm publish: the tarball ships the compiled TypeScript and a prebuilt N-API addon for this
# machine's architecture, so installing it needs no compiler. Each step is skipped when its output is newer
# than its inputs (as in setup.sh), so packing twice is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'prepack: %s\n' "$*" >&2; }

if [ ! -f dist/.built ] || [ -n "$(find src bench demo test/helpers tsconfig.json package.json -newer dist/.built -print -quit)" ]; then
  log "compiling TypeScript"
  npx --no-install tsc -p tsconfig.json
  touch dist/.built
fi
# The `portwall` command: the compiled CLI in one file (scripts/bundle-cli.mjs).
if [ ! -f dist/src/cli.bundle.js ] || [ dist/.built -nt dist/src/cli.bundle.js ]; then
  log "bundling the command"
  node scripts/bundle-cli.mjs
fi

prebuild="prebuilds/linux-$(node -p process.arch)/portwall.node"
if [ ! -f "$prebuild" ] || [ -n "$(find native binding.gyp -newer "$prebuild" -print -quit)" ]; then
  log "building $prebuild"
  nodedir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  if [ -f "$nodedir/include/node/node_api.h" ]; then export npm_config_nodedir="$nodedir"; fi
  JOBS=$(nproc) npx --no-install prebuildify --napi --strip
fi
