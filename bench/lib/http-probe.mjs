// The harness's own HTTP requests (probes, the lost-update check): a keep-alive client for 127.0.0.1.
import { Agent, request } from "node:http";

/** A browser User-Agent sent on every request: real browsers send one, and our store keeps it (truncated) in the session. */
export const USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/** A keep-alive agent for the harness's own requests (probes, lost-update check), bounded to 64 sockets. */
export const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/**
 * One GET to 127.0.0.1. Resolves status, body and the `name=value` of the first Set-Cookie.
 * @param {number} port
 * @param {string} path
 * @param {{ cookie?: string; userAgent?: string | null; timeoutMs?: number }} [options]
 * @returns {Promise<{ status: number; body: string; cookie: string | undefined }>}
 */
export function get(port, path, { cookie, userAgent = USER_AGENT, timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    /** @type {Record<string, string>} */
    const headers = {};
    if (cookie !== undefined) headers.cookie = cookie;
    if (userAgent !== null) headers["user-agent"] = userAgent;
    const req = request({ host: "127.0.0.1", port, path, method: "GET", headers, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        body += chunk;
      });
      res.on("end", () => {
        const setCookie = res.headers["set-cookie"]?.[0];
        resolve({ status: res.statusCode ?? 0, body, cookie: setCookie?.split(";", 1)[0] });
      });
      res.on("error", reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${path} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** The counter in a `Hello World #N` or `visits N` body, or `undefined`. */
export function counterIn(body) {
  const match = /(?:#|visits )(\d+)/.exec(body);
  return match === null ? undefined : Number(match[1]);
}
