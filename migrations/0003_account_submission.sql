-- The registration form's one-time submission id, kept with the account it created:
-- a retry of the same form (after a lost response) is recognised ("your account
-- exists, please log in") instead of answered "that username is taken".
ALTER TABLE users ADD COLUMN submission TEXT;
CREATE UNIQUE INDEX users_submission ON users (submission);
