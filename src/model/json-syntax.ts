/**
 * Where JSON text goes wrong. V8's JSON.parse messages echo a slice of the text but (for most mistakes) no
 * position; a person editing a state file needs a line and a column. This scanner checks syntax only — it
 * builds nothing — and is run only after JSON.parse has already failed.
 */

/** The first syntax error of `text`: its line and column (1-based) and what was expected there. */
export interface JsonSyntaxError {
  line: number;
  column: number;
  message: string;
}

const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const LITERAL = /true|false|null/y;
const SPACE = /[ \t\n\r]*/y;

/** Finds the first syntax error of `text`, or undefined when it is valid JSON. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  let i = 0;
  const stack: ('{' | '[')[] = [];
  const skipSpace = () => {
    SPACE.lastIndex = i;
    SPACE.test(text);
    i = SPACE.lastIndex;
  };
  const token = (re: RegExp): boolean => {
    re.lastIndex = i;
    if (!re.test(text)) return false;
    i = re.lastIndex;
    return true;
  };
  const fail = (expected: string): JsonSyntaxError => {
    const before = text.slice(0, i);
    const line = before.split('\n').length;
    const column = i - before.lastIndexOf('\n');
    const found = i >= text.length ? 'end of text' : JSON.stringify(String.fromCodePoint(text.codePointAt(i)!));
    return { line, column, message: `unexpected ${found}, expected ${expected}` };
  };

  // Each turn reads one value (opening containers as it goes), then the punctuation after it.
  for (;;) {
    skipSpace();
    const c = text[i];
    if (c === '{' || c === '[') {
      i++;
      skipSpace();
      if (text[i] === (c === '{' ? '}' : ']')) i++;
      else {
        stack.push(c);
        const wanted = c === '{' ? member() : undefined;
        if (wanted !== undefined) return fail(wanted);
        continue;
      }
    } else if (!(c === '"' ? token(STRING) : token(NUMBER) || token(LITERAL))) {
      return fail(c === '"' ? 'a string with legal escapes and no control characters' : 'a value');
    }
    // After a value: close containers, or a comma and the next member.
    for (;;) {
      skipSpace();
      const top = stack.at(-1);
      if (top === undefined) return i >= text.length ? undefined : fail('the end of the text');
      const close = top === '{' ? '}' : ']';
      if (text[i] === close) {
        stack.pop();
        i++;
        continue;
      }
      if (text[i] !== ',') return fail(`',' or '${close}'`);
      i++;
      const wanted = top === '{' ? member() : undefined;
      if (wanted !== undefined) return fail(wanted);
      break;
    }
  }

  // `"key" :` of an object member; leaves `i` at the member's value, or says what was expected instead.
  function member(): string | undefined {
    skipSpace();
    if (!token(STRING)) return 'a string key';
    skipSpace();
    if (text[i] !== ':') return "':'";
    i++;
    return undefined;
  }
}
