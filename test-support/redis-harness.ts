import type { SessionStore } from "atomic-session";
import { metaFor, newKey, type StoreHarness } from "atomic-session/testing";

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

/** Commands Redis ran, by name (lower case), as `INFO commandstats` counts them: the commands scripts call included. */
export async function commandCalls(info: () => Promise<string>): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const match of (await info()).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    calls.set(match[1] as string, Number(match[2]));
  }
  return calls;
}

/**
 * The commands Redis ran during `action`, by name, with their count (`INFO commandstats`
 * deltas: a script's EVALSHA and every `redis.call` it made; the INFO calls themselves left
 * out). Nothing else may use the server meanwhile.
 */
export async function callsDuring(info: () => Promise<string>, action: () => Promise<unknown>): Promise<Record<string, number>> {
  const before = await commandCalls(info);
  await action();
  const after = await commandCalls(info);
  const delta: Record<string, number> = {};
  for (const [name, calls] of after) {
    const added = calls - (before.get(name) ?? 0);
    if (added > 0 && name !== "info") delta[name] = added;
  }
  return delta;
}

/** How a test reaches a store's records behind its back (another connection, the key without the prefix). */
export interface BehindTheBack {
  del(key: string): Promise<unknown>;
  hSet(key: string, field: string, value: string): Promise<unknown>;
  set(key: string, value: string): Promise<unknown>;
  pExpire(key: string, ms: number): Promise<unknown>;
}

/**
 * `total` sessions of `user` (created in batches of 500), then 40 each ended behind the
 * index's back: deleted; idled out (the key expires, while the index score, the absolute
 * deadline, keeps the member); rebound to "someone-else"; turned into a rotation marker;
 * damaged; overwritten with a value of another type. Resolves the keys still live and one of
 * the rebound ones, once the idled-out ones have expired.
 */
export async function populateUser(
  store: SessionStore,
  user: string,
  total: number,
  backdoor: BehindTheBack,
): Promise<{ live: string[]; rebound: string }> {
  const now = Date.now();
  const keys = Array.from({ length: total }, () => newKey());
  for (let i = 0; i < keys.length; i += 500) {
    await Promise.all(
      keys.slice(i, i + 500).map((key) => store.create(key, { meta: metaFor(now, { userId: user }), fields: new Map([["n", "1"]]) })),
    );
  }
  const group = (n: number) => keys.slice(n * 40, n * 40 + 40);
  await Promise.all(group(0).map((key) => backdoor.del(key)));
  await Promise.all(group(1).map((key) => backdoor.pExpire(key, 50)));
  await Promise.all(group(2).map((key) => backdoor.hSet(key, "u", "someone-else")));
  await Promise.all(
    group(3).map(async (key) => {
      await backdoor.del(key);
      await backdoor.hSet(key, "r", "1");
    }),
  );
  await Promise.all(group(4).map((key) => backdoor.hSet(key, "e", "soon")));
  await Promise.all(group(5).map((key) => backdoor.set(key, "not a session")));
  await new Promise((resolve) => setTimeout(resolve, 200));
  return { live: keys.slice(240), rebound: group(2)[0] as string };
}
