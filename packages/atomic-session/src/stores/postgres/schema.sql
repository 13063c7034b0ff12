-- atomic-session PostgreSQL store, schema version 1 (atomic-session/stores/postgres).
-- Idempotent. With these names, create the store with { createSchema: false } to use it as applied.

CREATE TABLE IF NOT EXISTS "public"."atomic_session" (
  key text COLLATE "C" PRIMARY KEY,
  rotated boolean NOT NULL DEFAULT false,
  created_at bigint NOT NULL,
  last_seen_at bigint NOT NULL,
  absolute_expires_at bigint NOT NULL,
  expires_at bigint NOT NULL,
  user_id text COLLATE "C",
  user_agent text,
  persistent boolean,
  fields jsonb NOT NULL DEFAULT '{}'
) WITH (fillfactor = 80);

CREATE INDEX IF NOT EXISTS "atomic_session_user_id" ON "public"."atomic_session" (user_id, key) WHERE user_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS "atomic_session_expires_at" ON "public"."atomic_session" (expires_at);

CREATE TABLE IF NOT EXISTS "public"."atomic_session_meta" (
  name text PRIMARY KEY,
  value text NOT NULL
);

INSERT INTO "public"."atomic_session_meta" (name, value) VALUES ('schema_version', '1') ON CONFLICT (name) DO NOTHING;
