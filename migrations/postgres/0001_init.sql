-- The PostgreSQL schema: the same tables as the SQLite one, in PostgreSQL's own types (uuid ids,
-- timestamptz times, jsonb documents), with the columns that let several replicas share it.

-- Tenants exist through their keys; every row below belongs to a tenant through its instance.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    tenant        text NOT NULL,
    key_hash      bytea NOT NULL UNIQUE,
    prefix        text,
    created_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    expires_at    timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at);

CREATE TABLE instances (
    id                uuid PRIMARY KEY,
    tenant            text NOT NULL,
    name              text NOT NULL,
    refresh_schedule  text,
    created_at        timestamptz NOT NULL
);
CREATE INDEX instances_by_tenant ON instances (tenant, created_at);

CREATE TABLE data_sources (
    id                 uuid PRIMARY KEY,
    instance_id        uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name               text NOT NULL,
    entity_name        text NOT NULL,
    format             text NOT NULL,
    key_field          text NOT NULL,
    content            text,
    path               text,
    created_at         timestamptz NOT NULL,
    last_status        text,
    last_rows          bigint,
    last_error         text,
    last_started_at    timestamptz,
    last_completed_at  timestamptz
);
CREATE INDEX data_sources_by_instance ON data_sources (instance_id, created_at);

-- One row per entity; `generation` names the current set of items so a refresh can stage a new
-- generation in batches and switch to it atomically.
CREATE TABLE entities (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name         text NOT NULL,
    kind         text NOT NULL,
    key_field    text NOT NULL,
    generation   bigint NOT NULL DEFAULT 0,
    item_count   bigint NOT NULL DEFAULT 0,
    schema       jsonb NOT NULL DEFAULT '{"type":"object","properties":{}}',
    UNIQUE (instance_id, name)
);

-- Item keys sort by bytes (COLLATE "C"), as SQLite's do, so paging by key is the same order.
CREATE TABLE items (
    entity_id   bigint NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    generation  bigint NOT NULL,
    item_key    text COLLATE "C" NOT NULL,
    data        jsonb NOT NULL,
    PRIMARY KEY (entity_id, generation, item_key)
);

CREATE TABLE unification_configs (
    instance_id  uuid PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    config       jsonb NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE segments (
    id                 uuid PRIMARY KEY,
    instance_id        uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name               text NOT NULL,
    filter             text NOT NULL,
    member_count       bigint,
    last_refreshed_at  timestamptz,
    created_at         timestamptz NOT NULL
);
CREATE INDEX segments_by_instance ON segments (instance_id, created_at);

CREATE TABLE segment_members (
    segment_id   uuid NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    customer_id  text COLLATE "C" NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
);

CREATE TABLE measures (
    id                 uuid PRIMARY KEY,
    instance_id        uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name               text NOT NULL,
    entity_name        text NOT NULL,
    aggregate          text NOT NULL,
    field              text,
    filter             text,
    value              double precision,
    last_refreshed_at  timestamptz,
    created_at         timestamptz NOT NULL
);
CREATE INDEX measures_by_instance ON measures (instance_id, created_at);

-- A running job has an owner (the replica running it) and a heartbeat, so a replica that
-- starts never fails the jobs of the others, and any replica fails the job of one that died.
CREATE TABLE jobs (
    id            uuid PRIMARY KEY,
    instance_id   uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    target_id     text,
    status        text NOT NULL,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    completed_at  timestamptz,
    result        jsonb,
    error         text,
    owner         text,
    heartbeat_at  timestamptz
);
CREATE INDEX jobs_by_status ON jobs (status, created_at);

-- Domain events, written in the same transaction as the state change they describe.
CREATE TABLE events (
    id           uuid PRIMARY KEY,
    instance_id  uuid NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX events_by_instance ON events (instance_id, occurred_at);

CREATE TABLE subscriptions (
    id                    uuid PRIMARY KEY,
    instance_id           uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    trigger               text NOT NULL,
    notification_url      text NOT NULL,
    inputs                jsonb NOT NULL,
    inputs_key            text NOT NULL,
    secret                text,
    status                text NOT NULL,
    created_at            timestamptz NOT NULL,
    last_delivery_at      timestamptz,
    consecutive_failures  bigint NOT NULL DEFAULT 0,
    last_error            text,
    UNIQUE (instance_id, trigger, notification_url, inputs_key)
);
CREATE INDEX subscriptions_by_trigger ON subscriptions (instance_id, trigger, status);

-- The outbox: one row per (event, subscription), committed with the event. `next_attempt_at`
-- is epoch milliseconds (the dispatcher schedules by integer time); a claim pushes it past the
-- lease and sets `claim_token`, which fences the attempt's record against a later claim.
CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    event_id         uuid NOT NULL,
    subscription_id  uuid NOT NULL,
    instance_id      uuid NOT NULL,
    status           text NOT NULL,
    attempts         bigint NOT NULL DEFAULT 0,
    next_attempt_at  bigint NOT NULL,
    claim_token      uuid,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_error       text
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_by_subscription_due ON deliveries (subscription_id, status, next_attempt_at);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE status <> 'pending';

CREATE TABLE delivery_attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at     timestamptz NOT NULL,
    status_code      bigint,
    latency_ms       bigint NOT NULL,
    response_excerpt text,
    error            text
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);

-- One row per cron occurrence of an instance's schedule: the replica whose insert takes it
-- queues that occurrence's refresh, so each occurrence queues exactly one across replicas.
CREATE TABLE schedule_occurrences (
    instance_id  uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    occurrence   timestamptz NOT NULL,
    PRIMARY KEY (instance_id, occurrence)
);

-- The request budget of each API key across replicas: a fixed window counter.
CREATE TABLE rate_limit_windows (
    key_id        text PRIMARY KEY,
    window_start  bigint NOT NULL,
    used          bigint NOT NULL
);
