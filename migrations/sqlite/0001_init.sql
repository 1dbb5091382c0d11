-- Tenants exist through their keys; every row below belongs to a tenant through its instance.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    key_hash    BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE instances (
    id                TEXT PRIMARY KEY,
    tenant            TEXT NOT NULL,
    name              TEXT NOT NULL,
    refresh_schedule  TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX instances_by_tenant ON instances (tenant, created_at);

CREATE TABLE data_sources (
    id                 TEXT PRIMARY KEY,
    instance_id        TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    entity_name        TEXT NOT NULL,
    format             TEXT NOT NULL,
    key_field          TEXT NOT NULL,
    content            TEXT,
    path               TEXT,
    created_at         TEXT NOT NULL,
    last_status        TEXT,
    last_rows          INTEGER,
    last_error         TEXT,
    last_started_at    TEXT,
    last_completed_at  TEXT
);
CREATE INDEX data_sources_by_instance ON data_sources (instance_id, created_at);

-- One row per entity; `generation` names the current set of items so a refresh can stage a new
-- generation in batches and switch to it atomically.
CREATE TABLE entities (
    id           INTEGER PRIMARY KEY,
    instance_id  TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    key_field    TEXT NOT NULL,
    generation   INTEGER NOT NULL DEFAULT 0,
    item_count   INTEGER NOT NULL DEFAULT 0,
    schema       TEXT NOT NULL DEFAULT '{"type":"object","properties":{}}',
    UNIQUE (instance_id, name)
);

CREATE TABLE items (
    entity_id   INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    generation  INTEGER NOT NULL,
    item_key    TEXT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (entity_id, generation, item_key)
) WITHOUT ROWID;

CREATE TABLE unification_configs (
    instance_id  TEXT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    config       TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE segments (
    id                 TEXT PRIMARY KEY,
    instance_id        TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    filter             TEXT NOT NULL,
    member_count       INTEGER,
    last_refreshed_at  TEXT,
    created_at         TEXT NOT NULL
);
CREATE INDEX segments_by_instance ON segments (instance_id, created_at);

CREATE TABLE segment_members (
    segment_id   TEXT NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    customer_id  TEXT NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
) WITHOUT ROWID;

CREATE TABLE measures (
    id                 TEXT PRIMARY KEY,
    instance_id        TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    entity_name        TEXT NOT NULL,
    aggregate          TEXT NOT NULL,
    field              TEXT,
    filter             TEXT,
    value              REAL,
    last_refreshed_at  TEXT,
    created_at         TEXT NOT NULL
);
CREATE INDEX measures_by_instance ON measures (instance_id, created_at);

CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    target_id     TEXT,
    status        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    completed_at  TEXT,
    result        TEXT,
    error         TEXT
);
CREATE INDEX jobs_by_status ON jobs (status, created_at);

-- Domain events, written in the same transaction as the state change they describe.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    payload      TEXT NOT NULL,
    occurred_at  TEXT NOT NULL
);
CREATE INDEX events_by_instance ON events (instance_id, occurred_at);

CREATE TABLE subscriptions (
    id                    TEXT PRIMARY KEY,
    instance_id           TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    trigger               TEXT NOT NULL,
    notification_url      TEXT NOT NULL,
    inputs                TEXT NOT NULL,
    inputs_key            TEXT NOT NULL,
    secret                TEXT,
    status                TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    last_delivery_at      TEXT,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    last_error            TEXT,
    UNIQUE (instance_id, trigger, notification_url, inputs_key)
);
CREATE INDEX subscriptions_by_trigger ON subscriptions (instance_id, trigger, status);

-- The outbox: one row per (event, subscription), committed with the event.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    instance_id      TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_error       TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, status);

CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at     TEXT NOT NULL,
    status_code      INTEGER,
    latency_ms       INTEGER NOT NULL,
    response_excerpt TEXT,
    error            TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);
