'use strict';
// Private mode (docs/protocol.md, "Private mode, step by step"): RFC 9497's OPRF, suite
// ristretto255-SHA512, mode OPRF, on libsodium's ristretto255; then the bucket entries.

const crypto = require('node:crypto');
const sodium = require('libsodium-wrappers-sumo');

const SUITE = 'ristretto255-SHA512';
const CONTEXT = Buffer.concat([Buffer.from('OPRFV1-'), Buffer.from([0]), Buffer.from(`-${SUITE}`)]);

function i2osp(value, length) {
  const out = Buffer.alloc(length);
  out.writeUIntBE(value, 0, length);
  return out;
}

function sha512(...parts) {
  return crypto.createHash('sha512').update(Buffer.concat(parts)).digest();
}

/** expand_message_xmd (RFC 9380 section 5.3.1) with SHA-512: 64-byte blocks, 128-byte input. */
function expandMessageXmd(message, dst, length) {
  const blocks = Math.ceil(length / 64);
  const dstPrime = Buffer.concat([dst, i2osp(dst.length, 1)]);
  const b0 = sha512(Buffer.alloc(128), message, i2osp(length, 2), i2osp(0, 1), dstPrime);
  const out = [sha512(b0, i2osp(1, 1), dstPrime)];
  for (let i = 2; i <= blocks; i += 1) {
    const mixed = Buffer.from(b0.map((byte, j) => byte ^ out[i - 2][j]));
    out.push(sha512(mixed, i2osp(i, 1), dstPrime));
  }
  return Buffer.concat(out).subarray(0, length);
}

function hashToGroup(input) {
  const uniform = expandMessageXmd(input, Buffer.concat([Buffer.from('HashToGroup-'), CONTEXT]), 64);
  return Buffer.from(sodium.crypto_core_ristretto255_from_hash(uniform));
}

/** The client's first step: [blind, blinded element]; `blind` may be given (for vectors). */
function blind(input, blindScalar = Buffer.from(sodium.crypto_core_ristretto255_scalar_random())) {
  const element = hashToGroup(input);
  return [blindScalar, Buffer.from(sodium.crypto_scalarmult_ristretto255(blindScalar, element))];
}

/** The client's last step: the 64-byte OPRF output T. */
function finalize(input, blindScalar, evaluated) {
  const inverse = sodium.crypto_core_ristretto255_scalar_invert(blindScalar);
  const unblinded = Buffer.from(sodium.crypto_scalarmult_ristretto255(inverse, evaluated));
  return sha512(i2osp(input.length, 2), input, i2osp(unblinded.length, 2), unblinded,
    Buffer.from('Finalize'));
}

/** The bucket of T when buckets are named by `bits` bits. */
function bucketOf(output, bits) {
  return bits ? output.readUInt32BE(0) >>> (32 - bits) : 0;
}

/** The user id sealed in `entry` for T, or null: tag(8) || nonce(12) || ciphertext || tag(16). */
function openEntry(output, entry) {
  if (entry.length < 8 + 12 + 16 + 16) return null;
  const tag = entry.subarray(0, 8);
  const nonce = entry.subarray(8, 20);
  const expected = crypto.createHash('sha256')
    .update(Buffer.concat([Buffer.from('onnet/bucket-tag/v1'), output, nonce])).digest();
  if (!crypto.timingSafeEqual(tag, expected.subarray(0, 8))) return null;
  const key = crypto.createHash('sha256')
    .update(Buffer.concat([Buffer.from('onnet/bucket-key/v1'), output])).digest();
  const sealed = entry.subarray(20, entry.length - 16);
  const decipher = crypto.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  decipher.setAAD(tag, { plaintextLength: sealed.length });
  decipher.setAuthTag(entry.subarray(entry.length - 16));
  let padded;
  try {
    padded = Buffer.concat([decipher.update(sealed), decipher.final()]);
  } catch {
    return null;
  }
  return padded[0] + 1 <= padded.length ? padded.subarray(1, 1 + padded[0]).toString('ascii') : null;
}

module.exports = { SUITE, blind, bucketOf, finalize, openEntry, ready: sodium.ready };
