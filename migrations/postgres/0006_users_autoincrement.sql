-- User ids are never handed out twice. On Postgres the identity column already
-- guarantees it (a sequence never goes back, not even for a rolled-back insert);
-- this makes it refuse an id given by hand too, so nothing can reuse a number.
-- The SQLite migration of the same number rebuilds its table with AUTOINCREMENT.
ALTER TABLE users ALTER COLUMN id SET GENERATED ALWAYS;
