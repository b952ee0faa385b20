#!/usr/bin/env node
/**
 * The portwall command line. Commands grow with the project; each has --help.
 */
import { parseArgs } from 'node:util';

import { PortwallError } from './errors.js';
import { openNft } from './nft/client.js';

const HELP = `portwall — security groups programmed directly over netlink

Usage:
  portwall demo                         run the built-in demo in its own network namespaces (root)
  portwall status [--netns NAME] --json print the nftables objects programmed in a namespace, as JSON
  portwall --help                       this text

Exit codes: 0 success, 1 failure (the message names the object and field), 2 usage error.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return command ? 0 : 2;
  }
  switch (command) {
    case 'demo': {
      if (rest.includes('--help')) {
        process.stdout.write('portwall demo: creates client, host and VM namespaces, programs the host, shows a ping allowed then blocked, removes the namespaces.\n');
        return 0;
      }
      // The demo lives outside src/: it is a harness that runs `ip` and `ping`, which the product never does.
      const { runDemo } = await import('../demo/run.js');
      return (await runDemo()) ? 0 : 1;
    }
    case 'status': {
      const { values } = parseArgs({ args: rest, options: { netns: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' } } });
      if (values.help) {
        process.stdout.write('portwall status [--netns NAME] --json: lists tables, chains, sets, elements and rules over netlink.\n');
        return 0;
      }
      const listing = await openNft({ netns: values.netns ?? null }).list();
      process.stdout.write(`${JSON.stringify(listing, jsonBytes, 2)}\n`);
      return 0;
    }
    default:
      process.stderr.write(`portwall: unknown command "${command}"\n\n${HELP}\n`);
      return 2;
  }
}

// bigint handles and byte arrays print as strings / hex.
function jsonBytes(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return value;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof PortwallError) process.stderr.write(`portwall: ${err.code}: ${err.message}\n`);
    else process.stderr.write(`portwall: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
