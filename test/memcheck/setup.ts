// Runs in every test worker of the sanitizer run (vitest.config.ts here), before each test file.
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { afterAll } from 'vitest';

import { binding } from '../../src/native.js';

// The worker runs with libasan preloaded; the addon is the ASan build that PORTWALL_ADDON names. Load it
// now, then keep both from the programs the tests start (ip, nft, conntrack, node children): they are not
// instrumented, LeakSanitizer would fail them on their own leaks, and a node child cannot load the ASan
// addon without libasan preloaded.
const addon = binding() as unknown as { sanitizerLeakCheck?: () => boolean };
if (!addon.sanitizerLeakCheck) throw new Error(`${process.env.PORTWALL_ADDON} is not the sanitizer build`);
const logPrefix = /log_path=([^:]+)/.exec(process.env.ASAN_OPTIONS ?? '')?.[1];
if (!logPrefix) throw new Error('ASAN_OPTIONS has no log_path');
for (const name of ['LD_PRELOAD', 'PORTWALL_ADDON', 'ASAN_OPTIONS', 'LSAN_OPTIONS', 'UBSAN_OPTIONS']) delete process.env[name];

// vitest kills its workers before LeakSanitizer's own check at exit would finish, so each test file ends
// with a check of its own, after a full collection (what JS let go of must have been freed by then).
afterAll(async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (!addon.sanitizerLeakCheck!()) return;
  const dir = path.dirname(logPrefix);
  const log = readdirSync(dir)
    .filter((f) => f === `${path.basename(logPrefix)}.${process.pid}`)
    .map((f) => readFileSync(path.join(dir, f), 'utf8'))
    .join('');
  throw new Error(`LeakSanitizer found leaks:\n${log}`);
});
