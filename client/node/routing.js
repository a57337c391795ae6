"use strict";
// The routing hash of docs/routing.md §2, byte for byte:
//
//   input    = UTF-8(domain) || 0x00 || UTF-8(salt) || 0x00 || UTF-8(key)
//   u        = first 8 bytes of SHA-256(input), unsigned big-endian
//   bucket   = (u * 1_000_000) >> 64            (exact integer arithmetic, BigInt)
//   position = (u >> 11) * 2^-53                (exact double, < 1.0)
//
// Selection is anchored at zero: a key is in the canary (or the shadow sample) iff
// bucket < ppm.

const crypto = require("node:crypto");

const PPM = 1_000_000;
// With the u flag a surrogate class matches only surrogates that are not part of a pair
// (String.prototype.isWellFormed needs Node 20; Debian 12 ships Node 18).
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const DOMAINS = Object.freeze({ CANARY: "canary", SHADOW: "shadow" });

function checkText(name, value) {
  if (typeof value !== "string") {
    throw new TypeError(`${name} must be a string, got ${typeof value}`);
  }
  // Unpaired UTF-16 surrogates are not valid text; Buffer.from would silently replace them
  // with U+FFFD and hash a different key (docs/routing.md: do not hash such keys).
  if (LONE_SURROGATE.test(value)) {
    throw new RangeError(`${name} contains an unpaired UTF-16 surrogate`);
  }
}

/** The 64-bit draw `u` of (domain, salt, key) as a BigInt in [0, 2^64). */
function u64(domain, salt, key) {
  checkText("domain", domain);
  checkText("salt", salt);
  checkText("key", key);
  if (domain.includes("\0") || salt.includes("\0")) {
    throw new RangeError("domain and salt must not contain NUL");
  }
  const digest = crypto
    .createHash("sha256")
    .update(Buffer.from(`${domain}\0${salt}\0${key}`, "utf8"))
    .digest();
  return digest.readBigUInt64BE(0);
}

/** bucket = floor(u * 10^6 / 2^64), an integer in [0, 999_999]. */
function bucketOf(u) {
  return Number((u * BigInt(PPM)) >> 64n);
}

/** position = (u >> 11) * 2^-53, a double in [0, 1). */
function positionOf(u) {
  return Number(u >> 11n) * 2 ** -53;
}

/** {u64, bucket, position} of one draw; u64 as a decimal string (it exceeds 2^53). */
function draw(domain, salt, key) {
  const u = u64(domain, salt, key);
  return { u64: u.toString(10), bucket: bucketOf(u), position: positionOf(u) };
}

function bucket(domain, salt, key) {
  return bucketOf(u64(domain, salt, key));
}

function checkPpm(ppm) {
  if (!Number.isInteger(ppm) || ppm < 0 || ppm > PPM) {
    throw new RangeError(`ppm must be an integer in 0..${PPM}, got ${ppm}`);
  }
  return ppm;
}

/** Does the candidate serve this key at canary weight `canaryPpm`? */
function inCanary(salt, key, canaryPpm) {
  return bucket(DOMAINS.CANARY, salt, key) < checkPpm(canaryPpm);
}

/** Is this stable-served key mirrored to the candidate at shadow rate `shadowPpm`? */
function shadowSampled(salt, key, shadowPpm) {
  return bucket(DOMAINS.SHADOW, salt, key) < checkPpm(shadowPpm);
}

module.exports = { PPM, DOMAINS, u64, bucketOf, positionOf, draw, bucket, inCanary, shadowSampled };
