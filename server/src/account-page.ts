/**
 * The account page's HTML: server-rendered template strings, every interpolated value
 * escaped, no script. Rendering only: `account.ts` decides what to show.
 * @module
 */

/** Headers of every answer under `/account`, pages, redirects and errors alike. */
export const HTML_HEADERS: Readonly<Record<string, string>> = {
  "Content-Type": "text/html; charset=utf-8",
  "Cache-Control": "no-store",
  "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "same-origin",
};

/** Where the forms post. */
export const ACCOUNT_PATHS = {
  page: "/account",
  login: "/account/login",
  logout: "/account/logout",
  signOutEverywhere: "/account/sign-out-everywhere",
  signOut: (handle: string) => `/account/sessions/${encodeURIComponent(handle)}/sign-out`,
} as const;

export interface AccountSessionRow {
  /** The session's public handle (never its ID). */
  handle: string;
  current: boolean;
  userAgent: string | undefined;
  createdAt: Date;
  lastSeenAt: Date;
}

export interface AccountView {
  visitCount: number;
  user: string | undefined;
  /** The CSRF token every form carries. */
  csrfToken: string;
  /** The user's sessions, or why they cannot be listed. */
  sessions: AccountSessionRow[] | { unavailable: string };
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escapes text for HTML element content and for quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ESCAPES[char] ?? char);
}

const STYLE = `
body { font: 16px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 56rem; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
td.agent { word-break: break-all; }
.this-device { font-weight: 600; color: #175; }
form.inline { display: inline; margin: 0; }
button { font: inherit; padding: .2rem .8rem; cursor: pointer; }
.error { color: #a11; }
`;

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function form(action: string, csrfToken: string, fields: string, label: string, className = ""): string {
  const classAttribute = className === "" ? "" : ` class="${escapeHtml(className)}"`;
  return `<form method="post" action="${escapeHtml(action)}"${classAttribute}><input type="hidden" name="csrf" value="${escapeHtml(csrfToken)}">${fields}<button type="submit">${escapeHtml(label)}</button></form>`;
}

function time(date: Date): string {
  const iso = date.toISOString();
  return `<time datetime="${escapeHtml(iso)}">${escapeHtml(`${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`)}</time>`;
}

function sessionsSection(view: AccountView): string {
  if (!Array.isArray(view.sessions)) return `<h2>Your sessions</h2>\n<p class="error">${escapeHtml(view.sessions.unavailable)}</p>`;
  const rows = view.sessions
    .map((entry) => {
      const agent = entry.userAgent === undefined || entry.userAgent === "" ? "(unknown device)" : entry.userAgent;
      const marker = entry.current ? ` <span class="this-device">(this device)</span>` : "";
      return `<tr data-current="${entry.current}">
<td class="agent">${escapeHtml(agent)}${marker}</td>
<td>${time(entry.createdAt)}</td>
<td>${time(entry.lastSeenAt)}</td>
<td>${form(ACCOUNT_PATHS.signOut(entry.handle), view.csrfToken, "", "Sign out", "inline")}</td>
</tr>`;
    })
    .join("\n");
  return `<h2>Your sessions</h2>
<table id="sessions">
<thead><tr><th>Device</th><th>Signed in</th><th>Last seen</th><th></th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<p>${form(ACCOUNT_PATHS.signOutEverywhere, view.csrfToken, "", "Sign out everywhere")}</p>`;
}

/** The account page: the visit count, the user, and either the login form or the user's sessions. */
export function renderAccountPage(view: AccountView): string {
  const visits = `<p>Visit count: <strong id="visit-count">${escapeHtml(String(view.visitCount))}</strong></p>`;
  if (view.user === undefined) {
    const fields =
      `<p><label>User name <input name="user" required minlength="1" maxlength="64" autocomplete="username"></label></p>` +
      `<p><label><input type="checkbox" name="remember"> Remember me on this device</label></p>`;
    return layout(
      "Account",
      `<h1>Account</h1>
${visits}
<p id="user">Not signed in.</p>
<h2>Sign in</h2>
${form(ACCOUNT_PATHS.login, view.csrfToken, fields, "Sign in")}`,
    );
  }
  return layout(
    `Account: ${view.user}`,
    `<h1>Account</h1>
${visits}
<p id="user">Signed in as <strong id="user-name">${escapeHtml(view.user)}</strong>.</p>
${form(ACCOUNT_PATHS.logout, view.csrfToken, "", "Log out")}
${sessionsSection(view)}`,
  );
}

/** A short page for a refused form (400, 403, 404, 413, 415) or a redirect, with a link back to the account page. */
export function renderMessagePage(title: string, message: string): string {
  return layout(
    title,
    `<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(message)}</p>
<p><a href="${ACCOUNT_PATHS.page}">Back to your account</a></p>`,
  );
}
