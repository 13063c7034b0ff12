// A visit counter on Fastify 5, with sessions in SQLite (./data/examples.db): the count survives a restart.
//
//   npm run build -w examples && node examples/dist/fastify.js
//   curl -c jar -b jar 127.0.0.1:3000/

import { SessionManager } from "atomic-session";
import { sessionPlugin } from "atomic-session/fastify";
import { SqliteStore } from "atomic-session/stores/sqlite";
import Fastify from "fastify";

const port = Number(process.env.PORT ?? 3000);
const sessions = new SessionManager({ store: new SqliteStore({ path: "./data/examples.db" }) });

const app = Fastify({ logger: true });
await app.register(sessionPlugin, { manager: sessions });
app.get("/", async (request, reply) => {
  const visits = await request.session.increment("visitCount");
  reply.type("text/plain; charset=utf-8");
  return `Hello World #${visits - 1}\n`;
});
await app.listen({ host: "127.0.0.1", port });
