// A visit counter on node:http, with sessions in SQLite (./data/examples.db): the count survives a restart.
//
//   npm run build -w examples && node examples/dist/node-http.js
//   curl -c jar -b jar 127.0.0.1:3000/
import { createServer } from "node:http";
import { SessionManager } from "atomic-session";
import { withSessions } from "atomic-session/node";
import { SqliteStore } from "atomic-session/stores/sqlite";

const port = Number(process.env.PORT ?? 3000);
const sessions = new SessionManager({ store: new SqliteStore({ path: "./data/examples.db" }) });

const server = createServer(
  withSessions(sessions, async (req, res, session) => {
    if (req.url !== "/") {
      res.writeHead(404).end();
      return;
    }
    const visits = await session.increment("visitCount");
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" }).end(`Hello World #${visits - 1}\n`);
  }),
);
server.listen(port, "127.0.0.1", () => console.log(`node:http visit counter on http://127.0.0.1:${port}/`));
