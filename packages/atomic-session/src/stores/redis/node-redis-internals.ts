/**
 * The one place the Redis store reaches into a client's private fields, guarded: node-redis 5's
 * cluster client refreshes its slot map only on `MOVED`, and its only way to rediscover the
 * topology after a master died is the private `_slots.rediscover(node)`. When a node-redis
 * release renames it, `canRediscoverSlots` turns false, the store falls back to node-redis's
 * own behaviour (recovery on the next `MOVED`), and `test/stores/redis-internals.test.ts`
 * fails, so that the pinned version is looked at again.
 * @module
 */

interface ClusterInternals {
  _slots?: { rediscover?: (startWith: unknown) => Promise<void> };
  masters?: readonly { client?: { isReady?: boolean } }[];
}

/** Whether `cluster` (a node-redis `createCluster()` client) has the private hook this module uses. */
export function canRediscoverSlots(cluster: object): boolean {
  return typeof (cluster as ClusterInternals)._slots?.rediscover === "function";
}

/**
 * Asks a node-redis cluster client to rediscover its slot map, in the background, starting
 * from a connected master. Returns whether it could ask.
 */
export function rediscoverSlots(cluster: object): boolean {
  const internals = cluster as ClusterInternals;
  const rediscover = internals._slots?.rediscover;
  if (typeof rediscover !== "function") return false;
  const nodes = internals.masters ?? [];
  const startWith = nodes.find((node) => node.client?.isReady === true)?.client ?? nodes.find((node) => node.client)?.client;
  if (startWith === undefined) return false;
  rediscover.call(internals._slots, startWith).catch(() => {});
  return true;
}
