#!/usr/bin/env bash
# Memory checks of the native addon (docs/reliability.md, "Memory safety"), as root after scripts/setup.sh:
#   scripts/memcheck.sh asan       AddressSanitizer + UBSan build of the addon in build-asan/ (the normal build is
#                                  untouched), then the kernel tests that drive it (test/memcheck/vitest.config.ts)
#                                  with LeakSanitizer checking after each file
#   scripts/memcheck.sh valgrind   valgrind memcheck of node running test/memcheck/drive.mjs on the normal build
#   scripts/memcheck.sh faults-build   the fault-injection build of the addon in build-faults/ (when stale), which
#                                  test/kernel/faults.test.ts loads (docs/reliability.md, "Fault injection")
# Each exits non-zero on any error or definite leak.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'memcheck: %s\n' "$*" >&2; }
nodedir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
gyp_args=(--loglevel=error --jobs="$(nproc)")
if [ -f "$nodedir/include/node/node_api.h" ]; then gyp_args+=(--nodedir="$nodedir"); fi

# build_variant DIR GYP_DEFINE: the addon built with one binding.gyp variable set, into DIR/build (when stale).
build_variant() {
  local dir=$1 define=$2
  # node-gyp builds into ./build of its working directory: $dir holds links to the sources.
  mkdir -p "$dir"
  ln -sfn ../binding.gyp "$dir/binding.gyp"
  ln -sfn ../native "$dir/native"
  local addon=$dir/build/Release/portwall.node
  if [ ! -f "$addon" ] || [ -n "$(find native binding.gyp -newer "$addon" -print -quit)" ]; then
    log "building the addon with $define into $dir"
    (cd "$dir" && npx --no-install node-gyp configure "${gyp_args[@]}" -- "-D$define" >/dev/null &&
      npx --no-install node-gyp build "${gyp_args[@]}" >/dev/null)
  fi
}

asan() {
  build_variant build-asan pw_sanitize=1
  local logs
  logs=$(mktemp -d /tmp/portwall-asan.XXXXXX)
  PORTWALL_SANITIZER_LOG="$logs/report" npx --no-install vitest run --config test/memcheck/vitest.config.ts "$@" || {
    cat "$logs"/report.* 2>/dev/null >&2 || true
    return 1
  }
  # Reports of processes that died outside a test (the test files catch the rest).
  if grep -lq 'ERROR: \|runtime error:' "$logs"/report.* 2>/dev/null; then
    cat "$logs"/report.* >&2
    return 1
  fi
  rm -rf "$logs"
}

valgrind_run() {
  command -v valgrind >/dev/null || { log "valgrind is not installed (scripts/setup.sh installs it)"; return 1; }
  [ -f dist/.built ] || { log "run scripts/setup.sh first"; return 1; }
  # Definite leaks and every memory error fail the run; node's own still-reachable memory does not. One
  # suppression: V8's conservative stack scan (test/memcheck/valgrind.supp says why).
  valgrind --quiet --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --suppressions=test/memcheck/valgrind.supp --error-exitcode=1 node test/memcheck/drive.mjs
}

case "${1:-}" in
  asan) shift; asan "$@" ;;
  valgrind) valgrind_run ;;
  faults-build) build_variant build-faults pw_faults=1 ;;
  *) echo "usage: $0 asan [vitest args] | valgrind | faults-build" >&2; exit 2 ;;
esac
