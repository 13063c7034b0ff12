// The servers under test. Each runs in its own process (bench/server.mjs <name>) and serves
// the same visit counter:
//   GET /       increments the session's counter, answers `Hello World #N` (N = earlier visits);
//   GET /count  reads the counter without changing it, answers `visits N`.
//
// To add a server, add one entry to SERVERS. `requires` names files that must exist (for
// adapters still being written): when one is missing the runner skips the server and says so.
// Our code is imported by its package name, atomic-session, as an application would (the runner builds it when it is stale).
import { createServer } from "node:http";
import { join } from "node:path";

/**
 * The CPU the control server spends on each request, about what a session adds to a request
 * on node:http: with many connections, it shows what being slower than the load generator
 * does, with no session code at all.
 */
const BUSY_US = 20;

/** Signs cookies for every server that signs them (express-session and @fastify/session require a secret; ours signs too, like for like). */
const SECRET = "bench-secret-bench-secret-bench-secret-0123456789";

/**
 * @typedef {object} ServerContext
 * @property {string | undefined} redisUrl  the private redis-server (redis://127.0.0.1:<port>/0)
 * @property {string} dir                   a temporary folder of this server process (SQLite file)
 *
 * @typedef {object} StartedServer
 * @property {number} port
 * @property {() => Promise<void>} close
 *
 * @typedef {object} ServerEntry
 * @property {string} name                  command-line name
 * @property {string} label                 table label
 * @property {"baseline" | "anchor" | "ours"} group
 * @property {boolean} redis                whether it keeps sessions in the private Redis
 * @property {string[]} [requires]          files (relative to the repository) it needs
 * @property {boolean} [highConcurrencyOnly] measured only in the high-concurrency measurement (a control)
 * @property {(context: ServerContext) => Promise<StartedServer>} start
 */

/** @type {ServerEntry[]} */
export const SERVERS = [
  { name: "bare", label: "bare node:http (no session)", group: "baseline", redis: false, start: bare },
  {
    name: "bare-busy",
    label: `bare node:http + ${BUSY_US} µs of CPU per request (no session)`,
    group: "baseline",
    redis: false,
    highConcurrencyOnly: true,
    start: bareBusy,
  },
  { name: "express-session", label: "express + express-session + connect-redis", group: "anchor", redis: true, start: expressSession },
  { name: "fastify-session", label: "fastify + @fastify/session + connect-redis", group: "anchor", redis: true, start: fastifySession },
  { name: "ours-node-memory", label: "ours node:http + memory", group: "ours", redis: false, start: (c) => oursNode(c, "memory") },
  { name: "ours-node-sqlite", label: "ours node:http + SQLite", group: "ours", redis: false, start: (c) => oursNode(c, "sqlite") },
  { name: "ours-node-redis", label: "ours node:http + Redis", group: "ours", redis: true, start: (c) => oursNode(c, "redis") },
  {
    name: "ours-node-postgres",
    label: "ours node:http + PostgreSQL",
    group: "ours",
    redis: false,
    start: (c) => oursNode(c, "postgres"),
  },
  { name: "ours-express-redis", label: "ours Express + Redis", group: "ours", redis: true, start: (c) => oursExpress(c, "redis") },
  {
    name: "ours-fastify-redis",
    label: "ours Fastify + Redis",
    group: "ours",
    redis: true,
    start: (c) => oursFastify(c, "redis"),
  },
  {
    name: "ours-hono-redis",
    label: "ours Hono + Redis",
    group: "ours",
    redis: true,
    start: (c) => oursHono(c, "redis"),
  },
];

const TEXT = { "Content-Type": "text/plain; charset=utf-8" };

/**
 * The listen backlog of every server here. Node's default (511) cannot hold the burst of the
 * high-concurrency measurement, whose connections all open at once: past it the kernel drops
 * handshakes, and a client whose SYN-ACK is resent 1, 3 and 7 s later times out before its
 * first request, however fast the server answers. (The kernel caps it at net.core.somaxconn.)
 */
export const LISTEN_BACKLOG = 4096;

/** Listens on a free 127.0.0.1 port and resolves it. */
function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1", backlog: LISTEN_BACKLOG }, () => resolve(server.address().port));
  });
}

function closer(server, ...more) {
  return async () => {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(() => resolve(undefined)));
    for (const close of more) await close();
  };
}

/** The limit: the same routes with a process-wide counter and no session at all. */
async function bare() {
  let visits = 0;
  const server = createServer((req, res) => {
    if (req.url === "/") {
      const body = `Hello World #${visits++}\n`;
      res.writeHead(200, TEXT).end(body);
    } else if (req.url === "/count") {
      res.writeHead(200, TEXT).end(`visits ${visits}\n`);
    } else {
      res.writeHead(404).end();
    }
  });
  return { port: await listen(server), close: closer(server) };
}

/** The control: bare node:http that also keeps its one thread busy for BUSY_US per request. */
async function bareBusy() {
  let visits = 0;
  const server = createServer((req, res) => {
    const until = process.hrtime.bigint() + BigInt(BUSY_US * 1000);
    while (process.hrtime.bigint() < until);
    const body = req.url === "/count" ? `visits ${visits}\n` : `Hello World #${visits++}\n`;
    res.writeHead(200, TEXT).end(body);
  });
  return { port: await listen(server), close: closer(server) };
}

/** node-redis for connect-redis, with an error listener (an unhandled `error` event kills the process). */
async function nodeRedisClient(url) {
  const { createClient } = await import("redis");
  const client = createClient({ url });
  client.on("error", (error) => console.error("redis client error:", error.message));
  await client.connect();
  return client;
}

/** The usual production setup: express-session + connect-redis 9 + node-redis, resave and saveUninitialized off. */
async function expressSession({ redisUrl }) {
  const { default: express } = await import("express");
  const { default: session } = await import("express-session");
  const { RedisStore } = await import("connect-redis");
  const client = await nodeRedisClient(redisUrl);
  const app = express();
  app.use(session({ store: new RedisStore({ client }), secret: SECRET, resave: false, saveUninitialized: false }));
  app.get("/", (req, res) => {
    const visits = req.session.visitCount ?? 0;
    req.session.visitCount = visits + 1;
    res.type("text/plain").send(`Hello World #${visits}\n`);
  });
  app.get("/count", (req, res) => {
    res.type("text/plain").send(`visits ${req.session.visitCount ?? 0}\n`);
  });
  const server = createServer(app);
  return { port: await listen(server), close: closer(server, () => client.close()) };
}

/** fastify + @fastify/cookie + @fastify/session + connect-redis: defaults (rolling: true) but saveUninitialized off, and no Secure over plain HTTP. */
async function fastifySession({ redisUrl }) {
  const { default: Fastify } = await import("fastify");
  const { default: fastifyCookie } = await import("@fastify/cookie");
  const { default: fastifySessionPlugin } = await import("@fastify/session");
  const { RedisStore } = await import("connect-redis");
  const client = await nodeRedisClient(redisUrl);
  const app = Fastify({ logger: false });
  await app.register(fastifyCookie);
  await app.register(fastifySessionPlugin, {
    secret: SECRET,
    store: new RedisStore({ client }),
    saveUninitialized: false,
    cookie: { secure: false },
  });
  app.get("/", async (request, reply) => {
    const visits = request.session.get("visitCount") ?? 0;
    request.session.set("visitCount", visits + 1);
    reply.type("text/plain; charset=utf-8");
    return `Hello World #${visits}\n`;
  });
  app.get("/count", async (request, reply) => {
    reply.type("text/plain; charset=utf-8");
    return `visits ${request.session.get("visitCount") ?? 0}\n`;
  });
  await app.listen({ port: 0, host: "127.0.0.1", backlog: LISTEN_BACKLOG });
  return {
    port: app.server.address().port,
    close: async () => {
      await app.close();
      await client.close();
    },
  };
}

/** Our session manager over one of our stores, signed cookies, default timeouts. */
async function oursManager(store, dir, redisUrl) {
  const { SessionManager } = await import("atomic-session");
  let instance;
  let dropDatabase = async () => {};
  if (store === "memory") {
    const { MemoryStore } = await import("atomic-session/stores/memory");
    instance = new MemoryStore();
  } else if (store === "sqlite") {
    const { SqliteStore } = await import("atomic-session/stores/sqlite");
    instance = new SqliteStore({ path: join(dir, "sessions.db") });
  } else if (store === "postgres") {
    const database = await benchDatabase();
    const { PostgresStore } = await import("atomic-session/stores/postgres");
    instance = new PostgresStore({ url: database.url });
    dropDatabase = database.drop;
  } else {
    const { RedisStore } = await import("atomic-session/stores/redis");
    instance = new RedisStore({ url: redisUrl });
  }
  const manager = new SessionManager({ store: instance, secrets: [SECRET] });
  // Fail at start-up, not on the first measured request, when the store is not reachable.
  await manager.checkHealth();
  return {
    manager,
    dispose: async () => {
      await instance.dispose?.();
      await dropDatabase();
    },
  };
}

/**
 * A database of this server process's own, `atomic_session_bench_<pid>`, on the PostgreSQL server
 * that DATABASE_URL names (default postgres://postgres@127.0.0.1:5432/postgres), dropped on close.
 */
async function benchDatabase() {
  const { default: pg } = await import("pg");
  const server = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const name = `atomic_session_bench_${process.pid}`;
  const admin = async (statement) => {
    const client = new pg.Client({ connectionString: server });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin(`CREATE DATABASE "${name}"`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
}

/** The visit counter on any of our adapters: what the handler does with the session. */
const visitText = async (session) => `Hello World #${(await session.increment("visitCount")) - 1}\n`;
const countText = async (session) => `visits ${(await session.get("visitCount")) ?? 0}\n`;

async function oursNode({ dir, redisUrl }, store) {
  const { withSessions } = await import("atomic-session/node");
  const { manager, dispose } = await oursManager(store, dir, redisUrl);
  const server = createServer(
    withSessions(manager, async (req, res, session) => {
      // Compute the body (every session write awaited) before writeHead sends the headers.
      const body = req.url === "/" ? await visitText(session) : req.url === "/count" ? await countText(session) : undefined;
      if (body === undefined) res.writeHead(404).end();
      else res.writeHead(200, TEXT).end(body);
    }),
  );
  return { port: await listen(server), close: closer(server, dispose) };
}

async function oursExpress({ dir, redisUrl }, store) {
  const { default: express } = await import("express");
  const { sessionMiddleware } = await import("atomic-session/express");
  const { manager, dispose } = await oursManager(store, dir, redisUrl);
  const app = express();
  app.use(sessionMiddleware(manager));
  app.get("/", async (req, res) => {
    res.type("text/plain").send(await visitText(req.session));
  });
  app.get("/count", async (req, res) => {
    res.type("text/plain").send(await countText(req.session));
  });
  const server = createServer(app);
  return { port: await listen(server), close: closer(server, dispose) };
}

/** Our Fastify plugin (atomic-session/fastify): the session is `request.session`. */
async function oursFastify({ dir, redisUrl }, store) {
  const { default: Fastify } = await import("fastify");
  const { sessionPlugin } = await import("atomic-session/fastify");
  const { manager, dispose } = await oursManager(store, dir, redisUrl);
  const app = Fastify({ logger: false });
  await app.register(sessionPlugin, { manager });
  app.get("/", async (request, reply) => {
    reply.type("text/plain; charset=utf-8");
    return visitText(request.session);
  });
  app.get("/count", async (request, reply) => {
    reply.type("text/plain; charset=utf-8");
    return countText(request.session);
  });
  await app.listen({ port: 0, host: "127.0.0.1", backlog: LISTEN_BACKLOG });
  return {
    port: app.server.address().port,
    close: async () => {
      await app.close();
      await dispose();
    },
  };
}

/** Our Hono middleware (atomic-session/hono) on @hono/node-server: the session is `c.get("session")`. */
async function oursHono({ dir, redisUrl }, store) {
  const { Hono } = await import("hono");
  const { createAdaptorServer } = await import("@hono/node-server");
  const { sessionMiddleware } = await import("atomic-session/hono");
  const { manager, dispose } = await oursManager(store, dir, redisUrl);
  const app = new Hono();
  app.use(sessionMiddleware(manager));
  app.get("/", async (c) => c.text(await visitText(c.get("session"))));
  app.get("/count", async (c) => c.text(await countText(c.get("session"))));
  const server = createAdaptorServer({ fetch: app.fetch });
  return { port: await listen(server), close: closer(server, dispose) };
}
