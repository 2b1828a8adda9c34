'use strict';
// A second onnet client, in Node.js, written from docs/protocol.md and tests/vectors alone:
// hashed discovery with free re-syncs (the difference form, a token a part of the book, as
// "Books larger than one request" says), and private mode with its outputs kept. Numbers
// come in E.164; a real app normalizes its address book with libphonenumber first.

const crypto = require('node:crypto');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const privateMode = require('./private');

const CONTACT_HASH_VERSION = 1;
const DEADLINE_SECONDS = 10;

const definition = protoLoader.loadSync('onnet/v1/discovery.proto', {
  includeDirs: [path.resolve(__dirname, '../../proto')],
  keepCase: true,
  longs: Number,
  defaults: true,
  oneofs: true,
});
const { Discovery } = grpc.loadPackageDefinition(definition).onnet.v1;

/** SHA-256("onnet/contact/v1:" || E.164): the only thing hashed mode uploads. */
function contactHash(e164) {
  return crypto.createHash('sha256').update(`onnet/contact/v1:${e164}`, 'ascii').digest();
}

/** A hash's part among 2^bits: its first `bits` bits, most significant first (a string). */
function partOf(hash, bits) {
  return (BigInt(`0x${hash.slice(0, 16)}`) >> BigInt(64 - bits)).toString();
}

/**
 * The requests of a sync (docs/protocol.md, "Books larger than one request", steps 1 to 4):
 * `state` {bits, parts: {part: {token, covered}}}, `book` distinct hashes (hex).
 */
function plan(state, book, maxBatch, maxHashes) {
  let bits = state.bits;
  const largest = (b) => Math.max(...Object.values(count(book.map((h) => partOf(h, b)))));
  while (bits < 64 && 2 * book.length > maxBatch * 2 ** bits) bits += 1;
  while (bits < 64 && book.length && largest(bits) > maxBatch) bits += 1;
  const grown = BigInt(bits - state.bits);
  const requests = [];
  const numbers = [...new Set(book.map((h) => partOf(h, bits)))].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
  for (const part of numbers) {
    const hashes = book.filter((h) => partOf(h, bits) === part);
    const parent = state.parts[(BigInt(part) >> grown).toString()];
    const request = { part, hashes, token: '', added: [], removed: [] };
    if (parent) {
      const covered = new Set(parent.covered);
      const added = hashes.filter((h) => !covered.has(h));
      const removed = [...covered].filter((h) => !hashes.includes(h)).sort();
      const fits = hashes.length + added.length + removed.length <= maxHashes;
      if (fits && removed.length <= maxHashes - maxBatch) {
        Object.assign(request, { token: parent.token, added, removed });
      }
    }
    requests.push(request);
  }
  return { bits, requests };
}

function count(values) {
  const counts = {};
  values.forEach((v) => { counts[v] = (counts[v] || 0) + 1; });
  return counts;
}

/** The field a refusal names: its message reads "field: reason" (docs/protocol.md, Errors). */
function fieldOf(error) {
  const match = /^([a-z_]+): /.exec(error.details || '');
  return match ? match[1] : '';
}

class Client {
  /** A Discovery client of `target` ("host:port"); `token` is the account's credential. */
  constructor(target, { token = null, credentials = grpc.credentials.createInsecure() } = {}) {
    this.stub = new Discovery(target, credentials);
    this.metadata = new grpc.Metadata();
    if (token) this.metadata.set('authorization', `Bearer ${token}`);
  }

  call(method, request) {
    const deadline = Date.now() + DEADLINE_SECONDS * 1000;
    return new Promise((resolve, reject) => {
      this.stub[method](request, this.metadata, { deadline }, (error, response) =>
        error ? reject(error) : resolve(response));
    });
  }

  async getConfig() {
    const config = await this.call('GetConfig', {});
    if (config.contact_hash_version !== CONTACT_HASH_VERSION) {
      throw new Error(`the server expects contact hash version ${config.contact_hash_version}`);
    }
    return config;
  }

  /** New numbers the account may still test (null when the server does not say). */
  async quotaRemaining() {
    const config = await this.getConfig();
    return config._quota_remaining === 'quota_remaining' ? config.quota_remaining : null;
  }

  /**
   * Which of `numbers` (E.164) are on the network. `state` is what the last sync returned
   * ({bits, parts}: each part's token, base64, and covered hashes, hex; keep it as privately
   * as the book); the answer carries the next one, and how many numbers cost quota.
   */
  async discover(numbers, state = { bits: 0, parts: {} }) {
    const config = await this.getConfig();
    const book = [...new Set(numbers)];
    const hashes = book.map((number) => contactHash(number).toString('hex'));
    // As the server announced; an older server (0) allows what fits beside a full batch.
    const fits = Math.floor((config.max_message_bytes - 1024) / 32);
    const previous = config.max_previous || Math.max(0, fits - config.max_batch);
    const maxHashes = config.max_batch + previous;
    const position = new Map(hashes.map((hash, i) => [hash, i]));
    const { bits, requests } = plan(state, hashes, config.max_batch, maxHashes);
    const next = { bits, parts: {} };
    const matches = [];
    let charged = 0;
    for (const request of requests) {
      const sent = { hashes: Buffer.concat(request.hashes.map((h) => Buffer.from(h, 'hex'))) };
      let cost = request.hashes.length;
      if (request.token) {
        Object.assign(sent, {
          token: Buffer.from(request.token, 'base64'),
          added_hashes: Buffer.concat(request.added.map((h) => Buffer.from(h, 'hex'))),
          removed_hashes: Buffer.concat(request.removed.map((h) => Buffer.from(h, 'hex'))),
        });
        cost = request.added.length;
      }
      let response;
      try {
        response = await this.call('Discover', sent);
      } catch (error) {
        if (!(error.code === grpc.status.INVALID_ARGUMENT && fieldOf(error) === 'token')) throw error;
        // An expired or retired token: forget it and pay for the part again.
        response = await this.call('Discover', { hashes: sent.hashes });
        cost = request.hashes.length;
      }
      const { matched_indexes: indexes, user_ids: users } = response;
      if (indexes.length !== users.length || indexes.some((i) => i >= request.hashes.length)) {
        throw new Error('malformed DiscoverResponse');
      }
      indexes.forEach((i, k) => matches.push({ at: position.get(request.hashes[i]), user_id: users[k] }));
      next.parts[request.part] = { token: response.token.toString('base64'), covered: request.hashes };
      charged += cost;
    }
    matches.sort((a, b) => a.at - b.at);
    return {
      matches: matches.map(({ at, user_id }) => ({ e164: book[at], user_id })),
      charged,
      state: next,
    };
  }

  /**
   * Private mode: the server sees blinded elements and bucket numbers only. `state` holds
   * the OPRF outputs of an earlier sync ({key_id, outputs}: by contact hash, in hex); only
   * numbers without one are evaluated, and each of those costs one unit of quota.
   */
  async discoverPrivate(numbers, state = { key_id: '', outputs: {} }) {
    await privateMode.ready;
    let config = await this.getConfig();
    if (config.oprf_suite !== privateMode.SUITE) {
      throw new Error(`the server's OPRF suite is ${config.oprf_suite}`);
    }
    const book = [...new Set(numbers)];
    const kept = state.key_id === config.oprf_key_id ? state.outputs : {};
    const hashes = book.map((number) => contactHash(number).toString('hex'));
    const outputs = new Map();
    hashes.forEach((hash, i) => kept[hash] && outputs.set(i, Buffer.from(kept[hash], 'hex')));
    const pending = book.map((_, i) => i).filter((i) => !outputs.has(i));
    for (let start = 0; start < pending.length; start += config.max_batch) {
      const indexes = pending.slice(start, start + config.max_batch);
      const inputs = indexes.map((i) => Buffer.from(book[i], 'ascii'));
      const blinds = inputs.map((input) => privateMode.blind(input));
      const evaluated = await this.call('BlindEvaluate', {
        blinded_elements: Buffer.concat(blinds.map(([, element]) => element)),
      });
      if (evaluated.key_id !== config.oprf_key_id) {
        throw new Error('the server changed its OPRF key during the sync: sync again');
      }
      indexes.forEach((i, k) => {
        const element = evaluated.evaluated_elements.subarray(32 * k, 32 * k + 32);
        outputs.set(i, privateMode.finalize(inputs[k], blinds[k][0], element));
      });
    }
    const entries = await this.fetchBuckets(config, [...outputs.values()]).catch(async (error) => {
      if (!(error.code === grpc.status.INVALID_ARGUMENT && fieldOf(error) === 'prefix_bits')) {
        throw error;
      }
      config = await this.getConfig(); // the registry's size moved the bucket size
      return this.fetchBuckets(config, [...outputs.values()]);
    });
    const matches = [];
    outputs.forEach((output, i) => {
      const bucket = entries.get(privateMode.bucketOf(output, config.bucket_prefix_bits)) || [];
      const userId = bucket.map((entry) => privateMode.openEntry(output, entry)).find(Boolean);
      if (userId) matches.push({ index: i, e164: book[i], user_id: userId });
    });
    matches.sort((a, b) => a.index - b.index);
    const keep = Object.fromEntries(hashes.map((hash, i) => [hash, outputs.get(i).toString('hex')]));
    return {
      matches: matches.map(({ e164, user_id }) => ({ e164, user_id })),
      charged: pending.length,
      state: { key_id: config.oprf_key_id, outputs: keep },
    };
  }

  /** Every entry of the outputs' buckets, by bucket number. */
  async fetchBuckets(config, outputs) {
    const bits = config.bucket_prefix_bits;
    const wanted = [...new Set(outputs.map((o) => privateMode.bucketOf(o, bits)))].sort((a, b) => a - b);
    const entries = new Map();
    for (let start = 0; start < wanted.length; start += config.max_buckets) {
      const buckets = wanted.slice(start, start + config.max_buckets);
      const answer = await this.call('FetchBuckets', { prefix_bits: bits, buckets });
      answer.buckets.forEach(({ bucket, entries: found }) => entries.set(bucket, found));
    }
    return entries;
  }

  close() {
    this.stub.close();
  }
}

module.exports = { Client, contactHash, fieldOf, plan };
