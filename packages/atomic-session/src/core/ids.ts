import * as crypto from "node:crypto";
import { createHash, randomBytes } from "node:crypto";

/** 32 bytes of CSPRNG output = 256 bits, base64url without padding = 43 characters. */
const ID_BYTES = 32;
const ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * CSPRNG bytes are drawn 128 IDs at a time (as `crypto.randomUUID` does): one call into
 * OpenSSL per ID was a tenth of the CPU of a request that creates a session.
 */
const POOL_IDS = 128;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/** A new session ID. It lives only in the cookie: stores, logs and bodies see derived values. */
export function newSessionId(): string {
  if (poolOffset >= pool.length) {
    pool = randomBytes(ID_BYTES * POOL_IDS);
    poolOffset = 0;
  }
  const id = pool.toString("base64url", poolOffset, poolOffset + ID_BYTES);
  // Each slice of the pool is handed out once: wipe it so the buffer never holds an issued ID.
  pool.fill(0, poolOffset, poolOffset + ID_BYTES);
  poolOffset += ID_BYTES;
  return id;
}

/** Whether `value` has the exact shape of an ID we issue; checked before any hashing or store access. */
export function isWellFormedSessionId(value: string): boolean {
  return value.length === 43 && ID_PATTERN.test(value);
}

/**
 * The key a store files the session under: SHA-256 of the ID, cut to 192 bits (32
 * base64url characters). Knowing a key does not give the ID, lookups by key do not leak
 * the ID through timing, and 192 bits keep keys unique while a Redis session stays small.
 */
export function storeKeyOf(sessionId: string): string {
  return sha256(sessionId).toString("base64url", 0, 24);
}

/**
 * A public, non-secret name for a session derived from its store key: it goes in logs
 * (the `session` field) and in the list of a user's sessions, and cannot be turned back
 * into the key or the ID.
 */
export function handleOf(storeKey: string): string {
  return sha256(`handle:${storeKey}`).toString("base64url", 0, 12);
}

/** Node ≥ 20.12 hashes in one call, without a Hash object per digest (a request hashes once or twice). */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: "buffer") => Buffer }).hash;

function sha256(text: string): Buffer {
  return oneShot === undefined ? createHash("sha256").update(text).digest() : oneShot("sha256", text, "buffer");
}
