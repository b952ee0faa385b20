// The syntax scanner that locates JSON errors agrees with JSON.parse on what is valid, for thousands of
// randomly damaged copies of the example state, and points at the right line and column.
import { readFileSync } from 'node:fs';

import { expect, test } from 'vitest';

import { findJsonSyntaxError } from '../../src/model/json-syntax.js';
import { EXAMPLE_STATE_FILE } from '../helpers/bad-states.js';

const example = readFileSync(EXAMPLE_STATE_FILE, 'utf8');

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

test('agrees with JSON.parse on damaged texts', () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const pieces = ['{', '}', '[', ']', ',', ':', '"', '\\', ' ', '\n', '1', '-', '.', 'e', 't', 'null', '\u0001', 'é'];
  let invalid = 0;
  for (let n = 0; n < 3000; n++) {
    let text = example;
    for (let m = 1 + Math.floor(rand() * 3); m > 0; m--) {
      const at = Math.floor(rand() * text.length);
      const cut = rand() < 0.5 ? 1 : 0;
      text = text.slice(0, at) + (rand() < 0.7 ? pieces[Math.floor(rand() * pieces.length)]! : '') + text.slice(at + cut);
    }
    const found = findJsonSyntaxError(text);
    expect(found === undefined, text).toBe(parses(text));
    if (found !== undefined) invalid++;
  }
  expect(invalid).toBeGreaterThan(1500);
});

test('points at the mistake', () => {
  expect(findJsonSyntaxError(example)).toBeUndefined();
  expect(findJsonSyntaxError('{"a": [1, 2,]}')).toEqual({ line: 1, column: 13, message: 'unexpected "]", expected a value' });
  expect(findJsonSyntaxError('{"a": 1\n "b": 2}')).toEqual({ line: 2, column: 2, message: `unexpected "\\"", expected ',' or '}'` });
  expect(findJsonSyntaxError('[01]')).toEqual({ line: 1, column: 3, message: "unexpected \"1\", expected ',' or ']'" });
  expect(findJsonSyntaxError('{"a": tru}')?.column).toBe(7);
});
