// The examples' session data, declared once for atomic-session: `increment("visitCount")`
// type-checks in every adapter, and a typo in a key does not.
declare module "atomic-session" {
  interface SessionTypes {
    data: { visitCount: number };
  }
}

export {};
