/** The soak's verdict (bench/soak.ts): flat curves pass, growth after the warm-up does not. */
import { describe, expect, test } from 'vitest';

import { judge } from '../../bench/soak.js';

describe('soak verdict', () => {
  test('a warm-up climb then a plateau is flat; steady growth of RSS or descriptors is not', () => {
    const warm = [80, 120, 150, 170];
    expect(judge([...warm, ...Array(16).fill(180)], Array(20).fill(28))).toMatchObject({ flat: true, why: [] });
    const leak = Array.from({ length: 20 }, (_, i) => 150 + i * 5);
    expect(judge(leak, Array(20).fill(28)).why).toEqual([expect.stringMatching(/^RSS grew from/)]);
    const fds = Array.from({ length: 20 }, (_, i) => 28 + i);
    expect(judge(Array(20).fill(180), fds).why).toEqual([expect.stringMatching(/^open descriptors grew from/)]);
  });
});
