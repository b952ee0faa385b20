/** A describe block's pair of scratch namespaces (tests that compare one namespace with another). */
import { afterAll, beforeAll } from 'vitest';

import { Netns } from './netns.js';

/** Creates namespaces `<label>-a` and `<label>-b` before the block's tests (handed to `use`), removes them after. */
export function twoNamespaces(label: string, use: (a: Netns, b: Netns) => void): void {
  let a: Netns | undefined;
  let b: Netns | undefined;
  beforeAll(() => {
    a = new Netns(`${label}-a`);
    b = new Netns(`${label}-b`);
    use(a, b);
  });
  afterAll(() => {
    a?.destroy();
    b?.destroy();
  });
}
