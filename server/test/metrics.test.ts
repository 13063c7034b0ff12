import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { type ServerStoreSetup, sqliteSetup } from "../../test-support/server-stores.js";

/** The samples of a Prometheus text exposition, as `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    result.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return result;
}

describe("GET /metrics on the reference server", () => {
  let setup: ServerStoreSetup;
  let server: ServerProcess;
  beforeAll(async () => {
    setup = await sqliteSetup();
    server = await ServerProcess.start(setup.env);
  });
  afterAll(async () => {
    await server?.stop();
    await setup?.close();
  });

  const scrape = async (cookie?: string) => {
    const response = await fetch(`${server.url}/metrics`, cookie === undefined ? {} : { headers: { cookie } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(response.headers.getSetCookie()).toEqual([]);
    return { text: await response.text() };
  };

  it("answers the session counters and the store latency histogram with the right values after a known sequence", async () => {
    const empty = samples((await scrape()).text);
    expect(empty.get("atomic_session_sessions_created_total")).toBe(0);

    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n"); // create
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #1\n"); // increment (no load needed)
    const beforeLogin = jar.cookie as string;
    const login = await jar.login(server.url, "ada"); // load + rotate
    expect(login.status).toBe(200);
    // Scraping with a live cookie reads nothing from the store.
    await scrape(jar.cookie);
    expect((await jar.fetch(`${server.url}/logout`, { method: "POST" })).status).toBe(204); // load + destroy
    expect((await fetch(`${server.url}/session`, { headers: { cookie: beforeLogin } })).status).toBe(404); // load: expired
    expect((await fetch(`${server.url}/session`, { headers: { cookie: "sessionID=forged" } })).status).toBe(404); // invalid cookie

    const { text } = await scrape();
    const values = samples(text);
    for (const name of [
      "atomic_session_sessions_created_total",
      "atomic_session_sessions_rotated_total",
      "atomic_session_sessions_destroyed_total",
      "atomic_session_sessions_expired_total",
      "atomic_session_update_conflicts_total",
      "atomic_session_store_errors_total",
      "atomic_session_store_operation_duration_seconds",
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(values.get("atomic_session_sessions_created_total")).toBe(1);
    expect(values.get("atomic_session_sessions_rotated_total")).toBe(1);
    expect(values.get("atomic_session_sessions_destroyed_total")).toBe(1);
    expect(values.get("atomic_session_sessions_expired_total")).toBe(1);
    expect(values.get("atomic_session_invalid_cookies_total")).toBe(1);
    expect(values.get("atomic_session_update_conflicts_total")).toBe(0);
    const count = (operation: string) =>
      values.get(`atomic_session_store_operation_duration_seconds_count{operation="${operation}",store="sqlite"}`);
    expect(count("create")).toBe(1);
    expect(count("increment")).toBe(1);
    expect(count("rotate")).toBe(1);
    expect(count("destroy")).toBe(1);
    expect(count("load")).toBe(3);
    expect(values.get('atomic_session_store_operation_duration_seconds_bucket{le="+Inf",operation="load",store="sqlite"}')).toBe(3);
    expect(values.get('atomic_session_store_operation_duration_seconds_sum{operation="load",store="sqlite"}')).toBeGreaterThan(0);
  });

  it("never creates, loads or touches a session", async () => {
    const jar = new CookieJar();
    await jar.text(`${server.url}/`);
    const before = samples((await scrape()).text);
    for (let i = 0; i < 3; i++) await scrape(jar.cookie);
    await scrape();
    const after = samples((await scrape()).text);
    expect(after.get("atomic_session_sessions_created_total")).toBe(before.get("atomic_session_sessions_created_total"));
    const loads = '_count{operation="load",store="sqlite"}';
    expect(after.get(`atomic_session_store_operation_duration_seconds${loads}`)).toBe(
      before.get(`atomic_session_store_operation_duration_seconds${loads}`),
    );
    expect(await setup.count()).toBe(1);
  });
});
