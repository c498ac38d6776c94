-- Gooni database schema. Each "-- migrate: N" marker starts step N; store.Open
-- applies every step above PRAGMA user_version, each in its own transaction.
-- Steps are forward-only: never edit a released step, append a new one.
-- Times are integer Unix milliseconds (UTC); NULL means "not yet".

-- migrate: 1

CREATE TABLE accounts (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL UNIQUE,
    workspace            TEXT    NOT NULL,
    base_url             TEXT    NOT NULL DEFAULT '',
    capacity             INTEGER NOT NULL DEFAULT 1 CHECK (capacity >= 0),
    status               TEXT    NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'ready', 'failed', 'disabled')),
    status_reason        TEXT    NOT NULL DEFAULT '',
    last_health_check_at INTEGER,
    deploy_status        TEXT    NOT NULL DEFAULT ''
                         CHECK (deploy_status IN ('', 'running', 'succeeded', 'failed')),
    deploy_output        TEXT    NOT NULL DEFAULT '',
    last_deploy_at       INTEGER,
    -- Fernet token of the JSON credentials map; NULL = no credentials. Never plaintext.
    credentials          BLOB,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE tasks (
    id              TEXT    PRIMARY KEY,
    type            TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    mode            TEXT    NOT NULL,
    prompt          TEXT    NOT NULL,
    negative_prompt TEXT    NOT NULL DEFAULT '',
    params          TEXT    NOT NULL DEFAULT '{}',
    status          TEXT    NOT NULL
                    CHECK (status IN ('pending', 'processing', 'done', 'failed')),
    progress        INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    account_id      INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    error_code      TEXT    NOT NULL DEFAULT '',
    error_message   TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    completed_at    INTEGER,
    updated_at      INTEGER NOT NULL,
    result_path     TEXT    NOT NULL DEFAULT '',
    result_type     TEXT    NOT NULL DEFAULT '',
    preview_path    TEXT    NOT NULL DEFAULT '',
    preview_type    TEXT    NOT NULL DEFAULT '',
    has_image       INTEGER NOT NULL DEFAULT 0
);

-- One index serves the queue (status = 'pending' ORDER BY id), the gallery
-- (status = 'done' ORDER BY id DESC, keyset on id), per-status counts and the
-- processing scans, all without touching the table rows for ordering.
CREATE INDEX tasks_status_id ON tasks (status, id);
CREATE INDEX tasks_account ON tasks (account_id) WHERE account_id IS NOT NULL;

-- i2v input images live apart from tasks so that scans of tasks never read blobs.
CREATE TABLE task_inputs (
    task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    image   BLOB NOT NULL
);

-- Why a task went back to the queue, one row per requeue.
CREATE TABLE task_retries (
    id         INTEGER PRIMARY KEY,
    task_id    TEXT    NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    account_id INTEGER,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX task_retries_task ON task_retries (task_id, id);

-- Only a hash of each session token is stored; the token lives in the cookie.
CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('user', 'admin')),
    token_hash BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Append-only audit trail. mac = HMAC-SHA256(audit key, prev_mac || canonical row);
-- the key lives outside the database, so rows cannot be re-chained by someone
-- who only holds the file.
CREATE TABLE audit_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    ts             INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    source         TEXT    NOT NULL DEFAULT '',
    action         TEXT    NOT NULL,
    target         TEXT    NOT NULL DEFAULT '',
    outcome        TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL DEFAULT '',
    details        TEXT    NOT NULL DEFAULT '{}',
    prev_mac       BLOB    NOT NULL,
    mac            BLOB    NOT NULL
);
CREATE INDEX audit_events_action ON audit_events (action, id);
CREATE INDEX audit_events_outcome ON audit_events (outcome, id);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;

-- Rows may only be removed once past the 90-day retention minimum.
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.ts > (CAST(strftime('%s', 'now') AS INTEGER) - 90 * 86400) * 1000
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;

-- The chain's newest link, sealed as HMAC(key, "head" | last_id | last_mac),
-- so that removing the newest rows is detected too.
CREATE TABLE audit_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_id  INTEGER NOT NULL,
    last_mac BLOB    NOT NULL,
    mac      BLOB    NOT NULL
);

-- Where a future retention job (or key rotation) restarts the chain: rows up to
-- upto_id may be gone; row_mac is the mac of row upto_id, sealed by mac.
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    upto_id    INTEGER NOT NULL,
    row_mac    BLOB    NOT NULL,
    mac        BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

-- migrate: 2
-- Audit key rotation: a checkpoint is either a retention cut ('retention')
-- or the end of one key's segment of the chain ('rotation').
ALTER TABLE audit_checkpoints ADD COLUMN kind TEXT NOT NULL DEFAULT 'retention'
    CHECK (kind IN ('retention', 'rotation'));

-- migrate: 3
-- i2v input images move out of SQLite into files beside the task's media
-- (media/<id>.input.<ext>), so queued bytes never bloat the database; the
-- blobs of task_inputs are moved by store.Open right after this step. The
-- partial index makes the input quota's sum a walk over image tasks only.
ALTER TABLE tasks ADD COLUMN input_path  TEXT    NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN input_type  TEXT    NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN input_bytes INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_open_inputs ON tasks (status, input_bytes) WHERE input_bytes > 0;

-- migrate: 4
-- Audit anchoring (CONTRACT section 19): the head counts every event ever
-- appended and is sealed as HMAC(key, "head-v2" | count | last_id | last_mac).
-- NULL marks a head written by an older binary; store.Open upgrades it
-- (event_count = last_id) when its old seal is valid. The same head, sealed, is
-- kept in DATA_DIR/audit.anchor outside the database.
ALTER TABLE audit_head ADD COLUMN event_count INTEGER;

-- migrate: 5
-- Workspace drivers and model-aware routing (CONTRACT section 14). An
-- account has a driver (Workspace API v1 "gooni", or "comfyui"), the catalog
-- models its last successful health check found it able to serve (a JSON
-- array), and a config revision that changes whenever its target or
-- credentials do (the dispatcher rebuilds its driver then). A task handed to
-- a workspace that has not started it yet stays pending with its account and
-- handed_at set; it becomes processing (started_at) when the workspace
-- reports it running, and the TTL clock starts then.
ALTER TABLE accounts ADD COLUMN driver     TEXT    NOT NULL DEFAULT 'gooni' CHECK (driver IN ('gooni', 'comfyui'));
ALTER TABLE accounts ADD COLUMN models     TEXT    NOT NULL DEFAULT '[]';
ALTER TABLE accounts ADD COLUMN config_rev INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN handed_at INTEGER;

-- migrate: 6
-- Task control (CONTRACT section 12).
--
-- Idempotency-Key of POST /generate: the key, a SHA-256 of the request body
-- and the 202 answer, committed in the same transaction as the tasks it
-- created; rows older than 24 h no longer count and are purged hourly.
CREATE TABLE idempotency_keys (
    key        TEXT    PRIMARY KEY,
    body_hash  BLOB    NOT NULL,
    response   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- GET /tasks and /gallery filters: each filter has an index that also gives
-- the newest-first order (keyset on id), so a page reads only its rows.
CREATE INDEX tasks_model_id ON tasks (model, id);
CREATE INDEX tasks_type_id  ON tasks (type, id);

-- Prompt search (the q filter): a contentless FTS5 index of prompts. Its
-- rowid is task_search.docid, an INTEGER PRIMARY KEY (stable across VACUUM,
-- unlike the implicit rowid of tasks), mapped to the task id; triggers keep
-- both in step with tasks, so every writer of tasks is covered (from step 8
-- the insert trigger only queues the new id: store/searchindex.go).
CREATE TABLE task_search (
    docid   INTEGER PRIMARY KEY,
    task_id TEXT    NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE tasks_fts USING fts5(prompt, content='', contentless_delete=1,
    tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_search (task_id) VALUES (new.id);
    INSERT INTO tasks_fts (rowid, prompt) VALUES (last_insert_rowid(), new.prompt);
END;
CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks
BEGIN
    DELETE FROM tasks_fts WHERE rowid = (SELECT docid FROM task_search WHERE task_id = old.id);
    DELETE FROM task_search WHERE task_id = old.id;
END;
-- Tasks that exist already, oldest first, so docid order is creation order.
INSERT INTO task_search (task_id) SELECT id FROM tasks ORDER BY id;
INSERT INTO tasks_fts (rowid, prompt)
    SELECT s.docid, t.prompt FROM task_search s JOIN tasks t ON t.id = s.task_id;

-- migrate: 7
-- Invite links (CONTRACT section 16). Only a hash of each token is stored
-- (sha256); the token itself is shown once, in the answer that made it.
-- Each sign-in takes one of uses_left; revoked_at stops it at once. The
-- sessions it issued are ordinary rows of sessions.
CREATE TABLE invites (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   BLOB    NOT NULL UNIQUE,
    label        TEXT    NOT NULL DEFAULT '',
    uses         INTEGER NOT NULL,
    uses_left    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    CHECK (uses BETWEEN 1 AND 1000),
    CHECK (uses_left BETWEEN 0 AND uses)
);

-- migrate: 8
-- Prompt search indexed behind the submit (docs/PERFORMANCE.md, "The
-- prompt index in every batch"): a new task's id goes into search_pending
-- in the transaction that creates it, and store.indexSearch moves the
-- waiting ids into task_search and tasks_fts later, many tasks per FTS5
-- segment: when enough have gathered (in a submit's own transaction), when
-- submits pause, and before any search reads the index, so a search still
-- sees every task created before it. Writing the FTS5 index once per
-- submit transaction was a third of that transaction's pages.
CREATE TABLE search_pending (
    task_id TEXT PRIMARY KEY
) WITHOUT ROWID;
DROP TRIGGER tasks_search_insert;
CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO search_pending (task_id) VALUES (new.id);
END;
DROP TRIGGER tasks_search_delete;
CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks
BEGIN
    DELETE FROM search_pending WHERE task_id = old.id;
    DELETE FROM tasks_fts WHERE rowid = (SELECT docid FROM task_search WHERE task_id = old.id);
    DELETE FROM task_search WHERE task_id = old.id;
END;
