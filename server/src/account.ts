import type { IncomingMessage, ServerResponse } from "node:http";
import { type Session, SessionConfigError, type SessionInfo, type SessionManager, SessionRotatedError } from "atomic-session";
import { ACCOUNT_PATHS, type AccountView, HTML_HEADERS, renderAccountPage, renderMessagePage } from "./account-page.js";
import type { CsrfTokens } from "./csrf.js";
import { logIn, MAX_USER_LENGTH } from "./login.js";
import { MAX_BODY_BYTES, readBodyText } from "./request-body.js";
import "./session-data.js";

type AccountRoute = (req: IncomingMessage, res: ServerResponse, session: Session) => Promise<void>;

/** `/account/sessions/<handle>/sign-out`: the route key the app maps it to is `POST /account/sessions/:handle/sign-out`. */
export const ACCOUNT_SESSION_PATH = /^\/account\/sessions\/([A-Za-z0-9_-]{1,64})\/sign-out$/;

/** A form that was refused: nothing was changed. */
interface Refusal {
  status: 400 | 401 | 403 | 404 | 413 | 415;
  title: string;
  message: string;
}

/**
 * The account page and its forms. `GET /account` counts a visit (like `GET /`) and shows
 * the count, the user, and either the login form or the user's sessions. Every form posts
 * `application/x-www-form-urlencoded` with the session's CSRF token, and is answered
 * `303 See Other` back to `/account`, or with an error page when it is refused (a missing
 * or wrong token is `403`, and nothing changes).
 */
export function accountRoutes(manager: SessionManager, csrf: CsrfTokens): Record<string, AccountRoute> {
  /** Reads the form, checks its CSRF token against the session, then runs `act`; redirects back when it succeeds. */
  const formRoute =
    (act: (fields: URLSearchParams, info: SessionInfo, session: Session, req: IncomingMessage) => Promise<Refusal | undefined>) =>
    async (req: IncomingMessage, res: ServerResponse, session: Session): Promise<void> => {
      const body = await readFormBody(req);
      if (body.kind === "error") return sendPage(res, body.status, renderMessagePage(body.title, body.message));
      const info = await session.info();
      if (info === undefined || !csrf.verify(info.handle, body.fields.get("csrf"))) {
        return sendPage(
          res,
          403,
          renderMessagePage(
            "Form refused",
            "This form has expired or did not come from this site. Load the account page again, then retry.",
          ),
        );
      }
      const refusal = await act(body.fields, info, session, req);
      if (refusal !== undefined) return sendPage(res, refusal.status, renderMessagePage(refusal.title, refusal.message));
      res.writeHead(303, { ...HTML_HEADERS, Location: ACCOUNT_PATHS.page });
      res.end(renderMessagePage("See Other", "Done."));
    };

  /** The account page: a visit (like `GET /`), then the count, the user, and the login form or the user's sessions. */
  const showAccount = async (res: ServerResponse, session: Session): Promise<void> => {
    let visitCount = await session.increment("visitCount");
    let info = await session.info();
    if (info === undefined) {
      // A logout or a login ended the session between the increment and the read. Answer
      // like any ended session: a logged-out one starts afresh; a rotated one is a 409.
      visitCount = await session.increment("visitCount");
      info = await session.info();
      if (info === undefined) return sendPage(res, 409, renderMessagePage("Try again", "Your session changed while this page loaded."));
    }
    const view: AccountView = { visitCount, user: info.userId, csrfToken: csrf.tokenFor(info.handle), sessions: [] };
    if (info.userId !== undefined) {
      try {
        view.sessions = (await manager.listUserSessions(info.userId, session)).map((entry) => ({
          handle: entry.handle,
          current: entry.current,
          userAgent: entry.userAgent,
          createdAt: entry.createdAt,
          lastSeenAt: entry.lastSeenAt,
        }));
      } catch (error) {
        if (!(error instanceof SessionConfigError)) throw error;
        view.sessions = { unavailable: `This server's ${manager.store.kind} store cannot list sessions.` };
      }
    }
    sendPage(res, 200, renderAccountPage(view));
  };

  const signedIn = (info: SessionInfo): Refusal | undefined =>
    info.userId === undefined ? { status: 401, title: "Not signed in", message: "Sign in first." } : undefined;

  return {
    "GET /account": async (_req, res, session) => {
      try {
        await showAccount(res, session);
      } catch (error) {
        // A page with the pre-login cookie after a login elsewhere in this browser: an HTML 409, like the page's other answers.
        if (!(error instanceof SessionRotatedError)) throw error;
        sendPage(res, 409, renderMessagePage("Try again", "You signed in or out in another tab: reload the page."));
      }
    },

    "POST /account/login": formRoute(async (fields, _info, session) => {
      if ((await logIn(session, fields.get("user"), fields.get("remember") === "on")) !== undefined) return undefined;
      return { status: 400, title: "Bad user name", message: `A user name has 1 to ${MAX_USER_LENGTH} characters.` };
    }),

    "POST /account/logout": formRoute(async (_fields, _info, session) => {
      await session.destroy();
      return undefined;
    }),

    "POST /account/sessions/:handle/sign-out": formRoute(async (_fields, info, session, req) => {
      const refusal = signedIn(info);
      if (refusal !== undefined || info.userId === undefined) return refusal;
      const handle = ACCOUNT_SESSION_PATH.exec(req.url?.split("?", 1)[0] ?? "")?.[1] ?? "";
      if (handle === info.handle) {
        await session.destroy();
        return undefined;
      }
      if (await manager.revokeUserSession(info.userId, handle)) return undefined;
      return { status: 404, title: "No such session", message: "That session is not one of yours, or it has already ended." };
    }),

    "POST /account/sign-out-everywhere": formRoute(async (_fields, info, session) => {
      const refusal = signedIn(info);
      if (refusal !== undefined || info.userId === undefined) return refusal;
      // Every session of the user, this one included; the cookie is cleared only once all ended, so a 503 can be retried.
      await session.revokeAll();
      return undefined;
    }),
  };
}

function sendPage(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { ...HTML_HEADERS, "Content-Length": Buffer.byteLength(html) });
  res.end(html);
}

type FormReading = { kind: "ok"; fields: URLSearchParams } | ({ kind: "error" } & Refusal);

const FORM_ERRORS = {
  "wrong type": { title: "Unsupported form", message: "Send forms as application/x-www-form-urlencoded." },
  "too large": { title: "Form too large", message: `A form has at most ${MAX_BODY_BYTES} bytes.` },
  unreadable: { title: "Bad form", message: "The form could not be read." },
  "not UTF-8": { title: "Bad form", message: "The form is not valid UTF-8." },
} as const;

/** Reads an `application/x-www-form-urlencoded` body of at most 16 KiB; a malformed one is a 4xx, never an exception. */
async function readFormBody(req: IncomingMessage): Promise<FormReading> {
  const body = await readBodyText(req, "application/x-www-form-urlencoded");
  if (body.kind === "error") return { kind: "error", status: body.status, ...FORM_ERRORS[body.reason] };
  return { kind: "ok", fields: new URLSearchParams(body.text) };
}
