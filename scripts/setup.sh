#!/usr/bin/env bash
# Brings a Debian machine (as root) to the point where portwall runs: system packages, npm packages, the
# native addon and the TypeScript build. Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

packages=(pkg-config make g++ python3
  libmnl-dev libnftnl-dev libipset-dev libnetfilter-conntrack-dev
  nftables iptables ipset conntrack iproute2 iputils-ping kmod valgrind)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
command -v node >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Build against the headers of the node that runs us; nothing is downloaded.
nodedir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
gyp_args=(rebuild --loglevel=error --jobs="$(nproc)")
if [ -f "$nodedir/include/node/node_api.h" ]; then gyp_args+=(--nodedir="$nodedir"); fi

stamp=node_modules/.portwall-lock
if ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
  log "installing npm packages"
  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
  cp package-lock.json "$stamp"
fi

addon=build/Release/portwall.node
if [ ! -f "$addon" ] || [ -n "$(find native binding.gyp -newer "$addon" -print -quit)" ]; then
  log "building the native addon"
  npx --no-install node-gyp "${gyp_args[@]}" >/dev/null
fi

# The fault-injection build that test/kernel/faults.test.ts loads (never shipped; docs/reliability.md).
bash scripts/memcheck.sh faults-build

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
