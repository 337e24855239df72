// Writes bench/RESULTS.md (on stdout) from what bench/run.sh measured.
//
//   node report.js META ROWS RESULTS
//
// META    `key<TAB>value` lines: command, date, cpus, ...
// ROWS    the table, in order: `label<TAB>metric<TAB>rule`; the rule
//         (optional) is a target, rules joined by " & ":
//         ratio>=N (broker/Node), broker<N, node>=N, added<N (broker
//         minus direct).
// RESULTS `label<TAB>metric<TAB>peer<TAB>round<TAB>value<TAB>note` with
//         value `na` when the case could not run (the note says why).
'use strict';

const fs = require('node:fs');

const PEERS = ['broker', 'node', 'direct'];
const METRICS = {
  rps: { name: 'requests/s', digits: 0 },
  p50_ms: { name: 'p50 ms', digits: 2 },
  p99_ms: { name: 'p99 ms', digits: 2 },
  rss_mib: { name: 'RSS MiB', digits: 1 },
  cpu_ms: { name: 'server CPU ms per request', digits: 2 },
  sandbox_cpu_ms: { name: "its sandbox's CPU ms per request", digits: 2 },
};

function readTsv(path) {
  return fs.readFileSync(path, 'utf8').split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]
    : (sorted[mid - 1] + sorted[mid]) / 2;
}

// Returns {peer: {values: [...], na: reason, naRounds: n, notes: Set}}
// for one row.
function collect(results, label, metric) {
  const byPeer = {};
  for (const [l, m, peer, , value, note] of results) {
    if (l !== label || m !== metric) {
      continue;
    }
    const entry = byPeer[peer]
      || (byPeer[peer] = {
        values: [], na: null, naRounds: 0, notes: new Set(),
      });
    if (value === 'na') {
      entry.na = note || 'not measured';
      entry.naRounds += 1;
    } else {
      entry.values.push(Number(value));
      if (note) {
        entry.notes.add(note);
      }
    }
  }
  return byPeer;
}

function format(value, digits) {
  if (value === null) {
    return '–';
  }
  if (digits > 0 && Math.abs(value) < 1) {
    return value.toFixed(digits + 1);
  }
  return value.toFixed(digits);
}

function ratio(a, b) {
  if (a === null || b === null || b === 0) {
    return null;
  }
  return a / b;
}

function formatRatio(r) {
  if (r === null) {
    return '–';
  }
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

// Returns `met`, `missed` or `n/a` for one rule of a row, and the text.
function checkRule(rule, m) {
  const match = /^(ratio|broker|node|added)(<|>=)([\d.]+)$/.exec(rule.trim());
  if (!match) {
    return `${rule}: bad rule`;
  }
  const [, what, op, limitText] = match;
  const limit = Number(limitText);
  const value = {
    ratio: ratio(m.broker, m.node),
    broker: m.broker,
    node: m.node,
    added: m.broker !== null && m.direct !== null ? m.broker - m.direct : null,
  }[what];
  const name = what === 'ratio' ? 'broker/Node' : what;
  if (value === null) {
    return `${name} ${op} ${limit}: n/a`;
  }
  const met = op === '<' ? value < limit : value >= limit;
  const shown = what === 'added' ? ` (${value.toFixed(3)})` : '';
  return `${name} ${op} ${limit}: ${met ? 'met' : '**missed**'}${shown}`;
}

function tableRow(results, [label, metric, rule]) {
  const spec = METRICS[metric];
  const byPeer = collect(results, label, metric);
  const medians = {};
  const cells = [];
  const notes = [];
  for (const peer of PEERS) {
    const entry = byPeer[peer];
    medians[peer] = entry && entry.values.length
      ? median(entry.values) : null;
    if (!entry) {
      cells.push('–');
    } else if (medians[peer] === null) {
      cells.push(`n/a (${entry.na})`);
    } else {
      cells.push(format(medians[peer], spec.digits));
      if (entry.na) {
        notes.push(`${peer}: ${entry.naRounds} round(s) left out `
          + `(${entry.na})`);
      }
    }
    for (const note of entry ? entry.notes : []) {
      notes.push(`${peer}: ${note}`);
    }
  }
  const goal = rule
    ? rule.split('&').map((r) => checkRule(r, medians)).join('; ') : '';
  return `| ${label} | ${spec.name} | ${cells.join(' | ')} | `
    + `${formatRatio(ratio(medians.broker, medians.node))} | `
    + `${formatRatio(ratio(medians.broker, medians.direct))} | `
    + `${goal} | ${notes.join('; ')} |`;
}

function main() {
  const [metaPath, rowsPath, resultsPath] = process.argv.slice(2);
  const meta = Object.fromEntries(readTsv(metaPath));
  const rows = readTsv(rowsPath);
  const results = readTsv(resultsPath);
  const lines = [
    '# Benchmark results',
    '',
    `Written by \`${meta.command}\` on ${meta.date}. `
      + 'How to run it and read it: [README.md](README.md).',
    '',
    `- machine: ${meta.cpus} CPUs (${meta.cpu}); load average `
      + `${meta.loadavg} at the start; over the run ${meta.cpushare}`,
    `- broker ${meta.broker}, commit ${meta.commit}; Node ${meta.node}; `
      + `${meta.wrk}`,
    `- ${meta.rounds} round(s) of ${meta.duration} s per case and peer, `
      + `A B A B, wrk with ${meta.threads} threads; values are the `
      + 'medians of the rounds (memory: measured once)',
    '',
    '| case | metric | broker | Node peer | direct | broker / Node '
      + '| broker / direct | target | notes |',
    '|---|---|---:|---:|---:|---:|---:|---|---|',
    ...rows.map((row) => tableRow(results, row)),
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

main();
