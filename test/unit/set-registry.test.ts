import { describe, expect, test } from 'vitest';

import { SetRegistry } from '../../src/nft/set-registry.js';

describe('SetRegistry', () => {
  const filled = () => {
    const r = new SetRegistry<string>();
    r.set('inet', 'a', 's1', 'inet a s1');
    r.set('inet', 'a', 's2', 'inet a s2');
    r.set('inet', 'b', 's1', 'inet b s1');
    r.set('bridge', 'a', 's1', 'bridge a s1');
    return r;
  };
  const all = (r: SetRegistry<string>) =>
    (['inet', 'bridge'] as const).flatMap((f) => ['a', 'b'].flatMap((t) => ['s1', 's2'].map((n) => r.get(f, t, n)))).filter(Boolean);

  test('keeps family, table and name apart', () => {
    const r = filled();
    expect(all(r)).toEqual(['inet a s1', 'inet a s2', 'inet b s1', 'bridge a s1']);
    r.delete('inet', 'a', 's1');
    r.dropTable('inet', 'b');
    expect(all(r)).toEqual(['inet a s2', 'bridge a s1']);
  });

  test('dropWhere forgets only inside its scope, keeping what `keep` says', () => {
    const r = filled();
    r.dropWhere('inet', undefined, (name) => name === 's2');
    expect(all(r)).toEqual(['inet a s2', 'bridge a s1']);
    const s = filled();
    s.dropWhere(undefined, 'a', () => false);
    expect(all(s)).toEqual(['inet b s1']);
  });
});
