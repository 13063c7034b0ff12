/**
 * The failover bench on Redis Cluster (3 primaries, 3 replicas; replicas receive the stream
 * 40 ms late): primaries SIGKILLed under load from node-redis (the store's own `createCluster`
 * client) and ioredis (`Cluster`), with and without durable security writes. Prints what each
 * configuration lost; asserts that with `durability` no acknowledged logout, revocation or
 * rotation was lost, and for every configuration that the same stores reached the promoted
 * replicas by themselves and that no request outlived its deadline. Then durable writes on a
 * slot that moves to another primary (the pipeline follows ASK and MOVED whole).
 *
 * `npm test` runs 3 failovers; `FAILOVER_ROUNDS=10 npx vitest run packages/atomic-session/test/faults/failover-`
 * runs the full bench (10 per topology).
 */
import { SessionManager } from "atomic-session";
import { cookieValue, metaFor, openSession } from "atomic-session/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  adminCommand,
  type ClientFlavor,
  type ClusterTarget,
  expectFailoverFigures,
  failoverRounds,
  runBench,
  startClusterTopology,
} from "../../../../test-support/failover.js";
import { storeKeyOf } from "../../src/core/ids.js";
import { keySlot } from "../../src/stores/redis/durability.js";

const ROUNDS = failoverRounds();
/** Each primary has one replica: it is the one promoted. */
const DURABILITY = { replicas: 1, timeoutMs: 300 };
const PREFIX = "as:";

let target: ClusterTarget | undefined;
beforeAll(async () => {
  target = await startClusterTopology();
}, 90_000);
afterAll(async () => {
  await target?.stop();
}, 30_000);

describe("failover bench: Redis Cluster", () => {
  it(
    `${ROUNDS} primaries killed under load: durable writes lose no logout, revocation or rotation; every store recovers by itself`,
    async () => {
      const report = await runBench(target as ClusterTarget, ROUNDS, DURABILITY);
      expectFailoverFigures(report);
    },
    ROUNDS * 30_000 + 30_000,
  );
});

/** A store key (without the prefix) whose Redis key hashes to `slot`. */
function keyInSlot(slot: number): string {
  for (let i = 0; ; i++) {
    const key = `moved-${i}`;
    if (keySlot(PREFIX + key) === slot) return key;
  }
}

describe("durable writes on a slot that moves", () => {
  for (const flavor of ["node-redis", "ioredis"] as const satisfies readonly ClientFlavor[]) {
    it(`${flavor}: a logout follows ASK while the slot migrates and MOVED once it moved, and still waits for the replica`, async () => {
      const cluster = target as ClusterTarget;
      await cluster.waitHealthy();
      const durable = await cluster.open(flavor, { replicas: 1, timeoutMs: 1_000 });
      // Writes through another store, so that the durable store's slot map stays as it was.
      const other = await cluster.open("node-redis");
      try {
        const manager = new SessionManager({ store: durable.store, storeTimeoutMs: 3_000 });
        const opened = openSession(manager);
        await opened.session.increment("n");
        const migrated = storeKeyOf(cookieValue(opened.response.cookie));
        const slot = keySlot(PREFIX + migrated);
        const source = await cluster.primaryOf(slot);
        const destination = (await cluster.primaries()).find((member) => member !== source);
        if (destination === undefined) throw new Error("the cluster has one primary");
        const idOf = async (member: { port: number }) => String(await adminCommand(member.port, ["CLUSTER", "MYID"]));

        // Migrating: the key has moved to the destination, so the source answers ASK.
        await adminCommand(destination.port, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", await idOf(source)]);
        await adminCommand(source.port, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", await idOf(destination)]);
        await adminCommand(source.port, ["MIGRATE", "127.0.0.1", String(destination.port), "", "0", "5000", "KEYS", PREFIX + migrated]);
        await durable.store.destroy(migrated);
        // The bench's sessions in that slot move too, or the source may not give the slot up.
        for (;;) {
          const rest = await adminCommand(source.port, ["CLUSTER", "GETKEYSINSLOT", String(slot), "100"]);
          if (!Array.isArray(rest) || rest.length === 0) break;
          await adminCommand(source.port, ["MIGRATE", "127.0.0.1", String(destination.port), "", "0", "5000", "KEYS", ...rest.map(String)]);
        }

        // Moved: every primary learns the new owner; the durable store's map still names the source.
        for (const primary of await cluster.primaries()) {
          await adminCommand(primary.port, ["CLUSTER", "SETSLOT", String(slot), "NODE", await idOf(destination)]);
        }
        const moved = keyInSlot(slot);
        const now = Date.now();
        expect(await other.store.create(moved, { meta: metaFor(now), fields: new Map([["n", "1"]]) })).toBe(true);
        await durable.store.destroy(moved);

        const check = { now: Date.now(), idleTimeoutMs: 3_600_000, touchIntervalMs: 3_600_000 };
        expect(await other.store.load(migrated, check)).toBe("gone");
        expect(await other.store.load(moved, check)).toBe("gone");
        expect((await cluster.primaryOf(slot)).port).toBe(destination.port);
      } finally {
        await durable.close();
        await other.close();
      }
    }, 60_000);
  }
});
