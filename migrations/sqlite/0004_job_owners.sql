-- A running job names the process running it and when that process last said it still does,
-- as on PostgreSQL: a job whose heartbeat stops is failed by the periodic sweep.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN heartbeat_at TEXT;

-- One row per cron occurrence of an instance's schedule: only the insert that takes it queues
-- the occurrence's refresh, so an occurrence queues one refresh whoever sees it.
CREATE TABLE schedule_occurrences (
    instance_id  TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    occurrence   TEXT NOT NULL,
    PRIMARY KEY (instance_id, occurrence)
) WITHOUT ROWID;
