// A visit counter on Express 5, with sessions in memory (a restart starts again at #0).
//
//   npm run build -w examples && node examples/dist/express.js
//   curl -c jar -b jar 127.0.0.1:3000/

import { SessionManager } from "atomic-session";
import { sessionMiddleware } from "atomic-session/express";
import { MemoryStore } from "atomic-session/stores/memory";
import express from "express";

const port = Number(process.env.PORT ?? 3000);
const sessions = new SessionManager({ store: new MemoryStore() });

const app = express();
app.use(sessionMiddleware(sessions));
app.get("/", async (req, res) => {
  const visits = await req.session.increment("visitCount");
  res.type("text/plain").send(`Hello World #${visits - 1}\n`);
});
app.listen(port, "127.0.0.1", () => console.log(`Express visit counter on http://127.0.0.1:${port}/`));
