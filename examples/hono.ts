// A visit counter on Hono, served by @hono/node-server, with sessions in memory (a restart starts again at #0).
//
//   npm run build -w examples && node examples/dist/hono.js
//   curl -c jar -b jar 127.0.0.1:3000/
import { serve } from "@hono/node-server";
import { SessionManager } from "atomic-session";
import { sessionMiddleware } from "atomic-session/hono";
import { MemoryStore } from "atomic-session/stores/memory";
import { Hono } from "hono";

const port = Number(process.env.PORT ?? 3000);
const sessions = new SessionManager({ store: new MemoryStore() });

const app = new Hono().use(sessionMiddleware(sessions));
app.get("/", async (c) => {
  const visits = await c.var.session.increment("visitCount");
  return c.text(`Hello World #${visits - 1}\n`);
});
serve({ fetch: app.fetch, hostname: "127.0.0.1", port }, (info) => console.log(`Hono visit counter on http://127.0.0.1:${info.port}/`));
