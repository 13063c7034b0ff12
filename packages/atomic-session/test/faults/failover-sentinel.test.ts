/**
 * The failover bench on Redis Sentinel (1 primary, 2 replicas, 3 sentinels; replicas receive the
 * stream 40 ms late): primaries SIGKILLed under load from node-redis (the store's own
 * `createSentinel` client) and ioredis (`sentinels`), with and without durable security writes.
 * Prints what each configuration lost; asserts that with `durability` no acknowledged logout,
 * revocation or rotation was lost, and for every configuration that the same stores reached
 * the new primary by themselves and that no request outlived its deadline.
 *
 * `npm test` runs 3 failovers; `FAILOVER_ROUNDS=10 npx vitest run packages/atomic-session/test/faults/failover-`
 * runs the full bench (10 per topology).
 */
import { afterAll, beforeAll, describe, it } from "vitest";
import {
  expectFailoverFigures,
  type FailoverTarget,
  failoverRounds,
  runBench,
  startSentinelTopology,
} from "../../../../test-support/failover.js";

const ROUNDS = failoverRounds();
/**
 * Both replicas: whichever Sentinel promotes holds every acknowledged logout. With 1 of 2, a
 * logout can be lost when Sentinel promotes the replica that did not acknowledge it (it ranks
 * replicas by offsets it last heard of, up to a second old).
 */
const DURABILITY = { replicas: 2, timeoutMs: 300 };

let target: FailoverTarget | undefined;
beforeAll(async () => {
  target = await startSentinelTopology();
}, 60_000);
afterAll(async () => {
  await target?.stop();
}, 30_000);

describe("failover bench: Redis Sentinel", () => {
  it(
    `${ROUNDS} primaries killed under load: durable writes lose no logout, revocation or rotation; every store recovers by itself`,
    async () => {
      const report = await runBench(target as FailoverTarget, ROUNDS, DURABILITY);
      expectFailoverFigures(report);
    },
    ROUNDS * 30_000 + 30_000,
  );
});
