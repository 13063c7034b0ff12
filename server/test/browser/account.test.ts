import { existsSync } from "node:fs";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerProcess } from "../../../test-support/server-process.js";
import { type ServerStoreSetup, sqliteSetup } from "../../../test-support/server-stores.js";

/** Debian's Chromium: Playwright's own browser download does not work here. */
const CHROMIUM = "/usr/bin/chromium";
/**
 * Headless, and quiet on the network: without the background-networking flags Chromium
 * keeps dialling Google's hosts, which this machine's closed network refuses. Playwright
 * gives every launch a fresh temporary profile (it refuses `--user-data-dir` in `args`).
 */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

describe("the account page in headless Chromium", () => {
  let setup: ServerStoreSetup;
  let server: ServerProcess;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  /** Console errors, CSP violations among them: the page has no script, so there must be none. */
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's Chromium (as root: apt-get install -y chromium)`);
    }
    setup = await sqliteSetup();
    server = await ServerProcess.start(setup.env);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
  });
  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await server?.stop();
    await setup?.close();
  });

  /** A browser of its own (own cookies), with a user agent that names it on the sessions list. */
  async function device(name: string): Promise<Page> {
    const context = await browser.newContext({ userAgent: `${name} (atomic-session browser test)` });
    context.setDefaultTimeout(10_000);
    contexts.push(context);
    const page = await context.newPage();
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(`${name}: ${message.text()}`);
    });
    page.on("pageerror", (error) => consoleErrors.push(`${name}: ${error.message}`));
    return page;
  }

  const visitCount = async (page: Page) => Number(await page.locator("#visit-count").textContent());
  const userLine = async (page: Page) => (await page.locator("#user").textContent())?.trim();
  const rows = (page: Page) => page.locator("#sessions tbody tr");

  async function signIn(page: Page, user: string): Promise<void> {
    await page.goto(`${server.url}/account`);
    expect(await userLine(page)).toBe("Not signed in.");
    await page.locator('input[name="user"]').fill(user);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("#user-name").waitFor();
    expect(page.url()).toBe(`${server.url}/account`);
    expect(await page.locator("#user-name").textContent()).toBe(user);
  }

  it("signs in, counts visits, lists two devices, and signs the other device out", async () => {
    const laptop = await device("laptop");
    const phone = await device("phone");

    // Log in; the redirect back to /account is one more visit, and each reload another.
    await signIn(laptop, "ada");
    const afterLogin = await visitCount(laptop);
    expect(afterLogin).toBe(2);
    await laptop.reload();
    expect(await visitCount(laptop)).toBe(afterLogin + 1);
    await laptop.reload();
    expect(await visitCount(laptop)).toBe(afterLogin + 2);
    expect(await rows(laptop).count()).toBe(1);

    // A second browser signs in as the same user: both see two sessions, each marks its own.
    await signIn(phone, "ada");
    expect(await rows(phone).count()).toBe(2);
    expect(await phone.locator('tr[data-current="true"] td.agent').textContent()).toContain("phone (atomic-session browser test)");
    await laptop.reload();
    expect(await rows(laptop).count()).toBe(2);
    const current = laptop.locator('tr[data-current="true"]');
    const other = laptop.locator('tr[data-current="false"]');
    expect(await current.locator("td.agent").textContent()).toMatch(/^laptop .*\(this device\)$/);
    expect(await other.locator("td.agent").textContent()).toBe("phone (atomic-session browser test)");

    // The laptop signs the phone out.
    await other.getByRole("button", { name: "Sign out" }).click();
    await other.waitFor({ state: "detached" });
    expect(laptop.url()).toBe(`${server.url}/account`);
    expect(await rows(laptop).count()).toBe(1);
    expect(await laptop.locator("#user-name").textContent()).toBe("ada");

    // The phone is logged out: its next page is anonymous, with the login form again.
    await phone.reload();
    expect(await userLine(phone)).toBe("Not signed in.");
    expect(await phone.locator('input[name="user"]').count()).toBe(1);
    expect(await phone.locator("#sessions").count()).toBe(0);

    // And the laptop can still sign out everywhere, which logs it out too.
    await laptop.getByRole("button", { name: "Sign out everywhere" }).click();
    await laptop.locator('input[name="user"]').waitFor();
    expect(await userLine(laptop)).toBe("Not signed in.");

    expect(consoleErrors).toEqual([]);
  });
});
