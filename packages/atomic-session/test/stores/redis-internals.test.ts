/**
 * What the Redis store takes from its clients that no API promises:
 * - node-redis-internals.ts reaches into node-redis's cluster client (`_slots.rediscover`). These
 *   tests fail when the installed node-redis changes it: the hook is there, and calling it
 *   really refreshes the slot map (a slot moved behind the client's back is found at its new master).
 * - node-redis is an optional peer: a store given an ioredis client never loads it, which a child
 *   process whose module resolution refuses "redis" and "@redis/…" shows.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createCluster } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClusterNode, type RedisCluster, startRedisCluster } from "../../../../test-support/redis-cluster.js";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";
import { canRediscoverSlots, rediscoverSlots } from "../../src/stores/redis/node-redis-internals.js";

describe("node-redis internals the store relies on", () => {
  let cluster: RedisCluster;
  let client: ReturnType<typeof createCluster>;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    client = createCluster({ rootNodes: cluster.rootNodes.map((socket) => ({ socket })) });
    client.on("error", () => {});
    await client.connect();
  }, 90_000);
  afterAll(async () => {
    await client?.close();
    await cluster?.stop();
  }, 60_000);

  it("a createCluster client has the private slot-rediscovery hook", () => {
    expect(canRediscoverSlots(client)).toBe(true);
    expect(canRediscoverSlots({})).toBe(false);
    expect(rediscoverSlots({})).toBe(false);
  });

  it("calling it refreshes the slot map: a slot moved behind the client's back is then found at its new master", async () => {
    const slot = await cluster.slotOf("internals-probe");
    const source = await cluster.masterFor("internals-probe");
    const target = (await cluster.masters()).find((master) => master.port !== source.port) as ClusterNode;
    const idOf = async (node: ClusterNode) => String(await cluster.command(node, ["CLUSTER", "MYID"]));
    const [sourceId, targetId] = [await idOf(source), await idOf(target)];
    expect(client.getSlotMaster(slot).port).toBe(source.port);

    // An empty slot handed over the way redis-cli reshards one, without the client sending it a command.
    await cluster.command(target, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", sourceId]);
    await cluster.command(source, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", targetId]);
    await cluster.command(target, ["CLUSTER", "SETSLOT", String(slot), "NODE", targetId]);
    await cluster.command(source, ["CLUSTER", "SETSLOT", String(slot), "NODE", targetId]);
    for (const master of await cluster.masters()) {
      if (master.port !== source.port && master.port !== target.port) {
        await cluster.command(master, ["CLUSTER", "SETSLOT", String(slot), "NODE", targetId]);
      }
    }
    await cluster.waitHealthy();
    await expect.poll(async () => (await cluster.masterFor("internals-probe")).port, { timeout: 10_000 }).toBe(target.port);

    // node-redis refreshes its map only on MOVED: it still has the old owner.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(client.getSlotMaster(slot).port).toBe(source.port);
    expect(rediscoverSlots(client)).toBe(true);
    await expect.poll(() => client.getSlotMaster(slot).port, { timeout: 10_000, interval: 50 }).toBe(target.port);
  }, 60_000);
});

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../../../", import.meta.url));
const hooks = new URL("./refuse-node-redis.mjs", import.meta.url).href;

/**
 * Runs `body` (ESM, top-level await) in a fresh node process where resolving node-redis throws
 * (ESM imports, through the hooks), then reports node-redis modules in the CommonJS module cache
 * (require() calls, which Node 20 hooks do not see). Resolves what the child printed.
 */
async function runWithoutNodeRedis(body: string, env: Record<string, string>): Promise<string> {
  const register = `import { register } from "node:module"; register(${JSON.stringify(hooks)});`;
  const script = `
    ${body}
    const { createRequire } = await import("node:module");
    const cached = Object.keys(createRequire(process.cwd() + "/").cache);
    const loaded = cached.filter((path) => /[\\\\/]node_modules[\\\\/](redis|@redis)[\\\\/]/.test(path));
    if (loaded.length > 0) console.log("required: " + loaded.join(", "));
  `;
  const argv = ["--import", `data:text/javascript,${encodeURIComponent(register)}`, "--input-type=module", "-e", script];
  try {
    const { stdout } = await run(process.execPath, argv, { cwd: root, timeout: 30_000, env: { ...process.env, ...env } });
    return stdout.trim();
  } catch (error) {
    return `${(error as { stdout?: string }).stdout ?? ""}${(error as { stderr?: string }).stderr ?? String(error)}`;
  }
}

describe("node-redis is never loaded for a store on an injected ioredis client", () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("every operation works with node-redis unresolvable, and none loads it", async () => {
    const body = `
      const { Redis } = await import("ioredis");
      const { RedisStore } = await import("atomic-session/stores/redis");
      const { randomBytes } = await import("node:crypto");
      const newKey = () => randomBytes(32).toString("base64url");
      const metaFor = (at) => ({ createdAt: at, lastSeenAt: at, absoluteExpiresAt: at + 7_200_000, expiresAt: at + 3_600_000 });
      const rotation = (at, meta) => ({ meta, now: at, markerExpiresAt: at + 60_000 });
      const at = (now) => ({ now, idleTimeoutMs: 3_600_000, touchIntervalMs: 3_600_000 });
      const client = new Redis(process.env.REDIS_URL);
      const store = new RedisStore({ client, prefix: "child:" });
      const now = Date.now();
      const [key, next] = [newKey(), newKey()];
      const steps = [];
      steps.push(await store.create(key, { meta: metaFor(now), fields: new Map([["n", "1"]]) }));
      steps.push(typeof (await store.load(key, { now: now + 5, idleTimeoutMs: 60_000, touchIntervalMs: 0 })));
      steps.push(await store.increment(key, "n", 1, at(now)));
      steps.push(await store.apply(key, { set: new Map([["a", "1"]]), now }));
      steps.push(await store.compareAndSet(key, "a", "1", "2", now));
      steps.push(typeof (await store.rotate(key, next, rotation(now, { userId: "child" }))));
      steps.push((await store.listUserSessions("child", Date.now())).length);
      steps.push(await store.count(Date.now()));
      for await (const entry of store.scan(Date.now())) steps.push(entry.key === next);
      await store.ping();
      steps.push((await store.revokeUserSessions("child", Date.now())).length);
      await store.destroy(key);
      await store.dispose();
      await client.quit();
      console.log(JSON.stringify(steps));
    `;
    expect(await runWithoutNodeRedis(body, { REDIS_URL: server.url })).toBe(
      JSON.stringify([true, "object", 2, "ok", "ok", "object", 1, 2, true, 1]),
    );
  });

  it("the check has teeth: a store built from a URL, which needs node-redis, fails there", async () => {
    const body = `
      const { RedisStore } = await import("atomic-session/stores/redis");
      const store = new RedisStore({ url: process.env.REDIS_URL });
      console.log(await store.ping().then(() => "answered", (error) => String(error?.message ?? error)));
      await store.dispose();
    `;
    expect(await runWithoutNodeRedis(body, { REDIS_URL: server.url })).toContain("node-redis was imported (redis)");
  });
});
