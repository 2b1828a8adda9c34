'use strict';
// node check_vectors.js: this client against tests/vectors (contact hashes, private mode).

const fs = require('node:fs');
const path = require('node:path');
const { contactHash, plan } = require('./onnet');
const privateMode = require('./private');

function load(name) {
  return JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../tests/vectors', name), 'utf8'));
}

function checkContactHashes() {
  const { vectors } = load('contact_hash_v1.json');
  const wrong = vectors.filter((v) => contactHash(v.e164).toString('hex') !== v.contact_hash);
  for (const v of wrong) console.error(`contact hash of ${v.e164} differs from the vector`);
  console.log(`${vectors.length - wrong.length} of ${vectors.length} contact hash vectors agree`);
  return wrong.length === 0;
}

function checkPrivateMode() {
  const { vectors } = load('private_v1.json');
  const hex = (name, v) => Buffer.from(v[name], 'hex');
  const wrong = vectors.filter((v) => {
    const input = Buffer.from(v.e164, 'ascii');
    const [, blinded] = privateMode.blind(input, hex('blind', v));
    const output = privateMode.finalize(input, hex('blind', v), hex('evaluated_element', v));
    return !(blinded.equals(hex('blinded_element', v))
      && output.equals(hex('output', v))
      && privateMode.bucketOf(output, v.bucket_prefix_bits) === v.bucket
      && privateMode.openEntry(output, hex('entry', v)) === v.user_id);
  });
  for (const v of wrong) console.error(`private mode of ${v.e164} differs from the vector`);
  console.log(`${vectors.length - wrong.length} of ${vectors.length} private mode vectors agree`);
  return wrong.length === 0;
}

function checkSyncParts() {
  const { cases } = load('sync_parts_v1.json');
  const wrong = cases.filter((c) => {
    const parts = {};
    c.state.parts.forEach((p) => { parts[String(p.part)] = { token: p.token, covered: p.covered }; });
    const found = plan({ bits: c.state.bits, parts }, c.book, c.max_batch, c.max_hashes);
    found.requests.forEach((r) => { r.part = Number(r.part); });
    return JSON.stringify(found) !== JSON.stringify(c.expected);
  });
  for (const c of wrong) console.error(`sync parts differ: ${c.name}`);
  console.log(`${cases.length - wrong.length} of ${cases.length} sync part vectors agree`);
  return wrong.length === 0;
}

privateMode.ready.then(() => {
  const results = [checkContactHashes(), checkPrivateMode(), checkSyncParts()];
  process.exit(results.every(Boolean) ? 0 : 1);
});
