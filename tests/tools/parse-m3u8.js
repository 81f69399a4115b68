#!/usr/bin/env node
// Reads one HLS playlist on stdin and prints m3u8-parser's manifest as JSON on stdout.
// Parser warnings and info messages are printed too (as "warnings"), so a test can
// assert there were none.
'use strict';

const { Parser } = require('m3u8-parser');

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const parser = new Parser();
  const warnings = [];
  parser.on('warn', (w) => warnings.push(w.message));
  parser.push(Buffer.concat(chunks).toString('utf8'));
  parser.end();
  const out = Object.assign({}, parser.manifest, { warnings });
  process.stdout.write(JSON.stringify(out));
});
