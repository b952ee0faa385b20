import { writeSync } from 'node:fs';

/** mulberry32: a small seeded PRNG, the same sequence on every platform — a failure or a run reproduces from its seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The seed of a seeded test, read from the environment variable `envName`: its value when set; in CI (`CI` set)
 * `ciSeed`, a seed that passed, so that a CI run is repeatable; otherwise a new one per run, so that local runs
 * keep exploring. The seed is written to the process's stderr at once (not through the test runner's console),
 * so a worker that dies mid-test still leaves the seed that reproduces it; every test also names it in failures.
 */
export function testSeed(envName: string, ciSeed: number): number {
  const env = process.env[envName];
  const seed = env !== undefined && env !== '' ? Number(env) : process.env.CI ? ciSeed : Date.now() % 1_000_000;
  writeSync(2, `[seed] ${envName}=${seed}\n`);
  return seed;
}
