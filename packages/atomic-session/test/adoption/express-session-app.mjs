/**
 * The application before the move: Express + express-session + connect-redis 9 on node-redis,
 * as its documentation sets it up. Run as a child process by express-session.test.ts.
 * Environment: REDIS_URL, SECRETS (a JSON array: the first signs), MAX_AGE (ms, optional).
 * Prints `listening <port>` once it accepts connections.
 */
import { RedisStore } from "connect-redis";
import express from "express";
import session from "express-session";
import { createClient } from "redis";

const client = createClient({ url: process.env.REDIS_URL });
client.on("error", (error) => console.error(`redis: ${error.message}`));
await client.connect();

const app = express();
app.use(express.json());
app.use(
  session({
    store: new RedisStore({ client }),
    secret: JSON.parse(process.env.SECRETS ?? "[]"),
    resave: false,
    saveUninitialized: false,
    cookie: process.env.MAX_AGE === undefined ? {} : { maxAge: Number(process.env.MAX_AGE) },
  }),
);

app.post("/visit", (req, res) => {
  req.session.visits = (req.session.visits ?? 0) + 1;
  res.json({ visits: req.session.visits });
});

app.post("/cart", (req, res) => {
  req.session.cart = req.body;
  res.json({ cart: req.session.cart });
});

// The login of express-session's own example: a new session ID, then the user on it.
app.post("/login", (req, res, next) => {
  req.session.regenerate((error) => {
    if (error) return next(error);
    req.session.user = req.body.user;
    req.session.save((saveError) => (saveError ? next(saveError) : res.json({ user: req.session.user })));
  });
});

app.get("/me", (req, res) => {
  res.json({ user: req.session.user ?? null, visits: req.session.visits ?? 0 });
});

const server = app.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
process.on("SIGTERM", () => {
  server.close();
  client.destroy();
});
