#!/usr/bin/env node
// The reference peer of the differential tests: what the official
// @picahq/authkit-token SDK answers for one token request.
//
//   node sdk-token.js --base-url URL --secret SK
//                     [--identity ID] [--identity-type TYPE]
//
// Prints the JSON of AuthKitToken#create() on stdout and exits 0 (the SDK
// answers `undefined` when it cannot reach Pica: that prints `null`). If
// the SDK throws, prints {"exception": message} and exits 1. Bad usage
// exits 2. Stdout carries nothing else: whatever the SDK logs goes to
// stderr, one line per call, with the secret masked.
'use strict';

const { parseArgs } = require('node:util');

const USAGE = 'usage: node sdk-token.js --base-url URL --secret SK '
  + '[--identity ID] [--identity-type TYPE]';

let secretToMask = null;

// One short line for a value the SDK logs; its errors carry the request
// configuration, secret header included, so never print them whole.
function describe(value) {
  if (value instanceof Error) {
    const code = value.code ? ` (${value.code})` : '';
    return `${value.name}: ${value.message}${code}`;
  }
  if (typeof value === 'string') {
    return value;
  }
  try {
    return JSON.stringify(value);
  } catch (err) {
    return String(value);
  }
}

function mask(text) {
  return secretToMask ? text.split(secretToMask).join('<secret>') : text;
}

function logToStderr(level) {
  return (...args) => {
    const line = mask(args.map(describe).join(' '));
    process.stderr.write(`sdk ${level}: ${line}\n`);
  };
}

// Route every console method to stderr so stdout stays pure JSON.
function redirectConsole() {
  for (const level of ['log', 'info', 'debug', 'warn', 'error', 'trace']) {
    console[level] = logToStderr(level);
  }
}

function parseCommandLine(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      'base-url': { type: 'string' },
      secret: { type: 'string' },
      identity: { type: 'string' },
      'identity-type': { type: 'string' },
    },
  });
  if (!values['base-url'] || !values.secret) {
    throw new Error('--base-url and --secret are required');
  }
  return values;
}

// Write the whole answer, then exit: the HTTP agent may hold sockets open.
function finish(text, code) {
  process.stdout.write(`${text}\n`, () => process.exit(code));
}

async function main() {
  let args;
  try {
    args = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`sdk-token: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  secretToMask = args.secret;
  redirectConsole();

  try {
    const { AuthKitToken } = require('@picahq/authkit-token');
    const client = new AuthKitToken(args.secret, {
      baseUrl: args['base-url'],
    });
    const result = await client.create({
      identity: args.identity,
      identityType: args['identity-type'],
    });
    finish(JSON.stringify(result === undefined ? null : result), 0);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    finish(JSON.stringify({ exception: mask(message) }), 1);
  }
}

main();
