import type { StoreHarness } from "atomic-session/testing";

/** The few commands the conformance harness sends: a node-redis client or cluster has them all. */
export interface RedisAdmin {
  pTTL(key: string): Promise<number>;
  hDel(key: string, field: string): Promise<number>;
  hSet(key: string, field: string, value: string): Promise<number>;
  exists(key: string): Promise<number>;
}

/**
 * How the store conformance suite looks into Redis beside a `RedisStore` with `prefix`:
 * the key's own TTL, whether anything is under the key, and a half-written record.
 */
export function redisBackendView(admin: RedisAdmin, prefix = "as:"): Pick<StoreHarness, "backendExpiryMs" | "corrupt" | "holdsAnything"> {
  return {
    async backendExpiryMs(key) {
      const ttl = await admin.pTTL(prefix + key);
      if (ttl === -2) return undefined;
      return ttl === -1 ? Number.POSITIVE_INFINITY : ttl;
    },
    async corrupt(key) {
      // A half-written record: one deadline gone, another not a number.
      await admin.hDel(prefix + key, "a");
      await admin.hSet(prefix + key, "e", "soon");
    },
    async holdsAnything(key) {
      return (await admin.exists(prefix + key)) === 1;
    },
  };
}
