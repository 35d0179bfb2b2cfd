-- Retention rules, legal holds and deletions. Rules and holds are recorded as evidence in the
-- volumes (evidenced NULL until the writing process has), so a rebuilt catalog has them again.

-- keep_days / min_days NULL: forever / no minimum. The lowest priority number is tried first.
CREATE TABLE retention_rules (
    id {id},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    query TEXT NOT NULL,
    keep_days BIGINT,
    min_days BIGINT,
    priority BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    removed_by TEXT,
    removed_at BIGINT,
    evidenced BIGINT,
    UNIQUE (tenant_id, name)
);

-- custodians: JSON list of addresses (a participant, or the owner of a mailbox). A released hold
-- stays, with who released it and why.
CREATE TABLE legal_holds (
    id {id},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    query TEXT,
    custodians TEXT NOT NULL,
    date_from BIGINT,
    date_until BIGINT,
    placed_by TEXT NOT NULL,
    placed_at BIGINT NOT NULL,
    released_by TEXT,
    released_at BIGINT,
    release_reason TEXT,
    evidenced BIGINT,
    UNIQUE (tenant_id, name)
);

-- Bumped (row-locked) by every hold placed; a deletion is decided under the same lock and only
-- against the holds it evaluated, so a hold placed meanwhile always wins.
CREATE TABLE holds_version (
    id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO holds_version (id, version) VALUES (1, 0);

-- The deletion certificate of a message: what is left once its content is gone. state: decided
-- (nothing in the volumes yet), recorded (the tombstone is durable, rows gone), shredded (keys
-- destroyed: done). records: JSON list of the records whose keys go ([volume, segment, offset,
-- length], the original first).
CREATE TABLE deletions (
    message BIGINT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    date BIGINT NOT NULL,
    sender_domain TEXT NOT NULL,
    reason TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    records TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX deletions_by_tenant ON deletions (tenant_id, decided_at);
-- Every writing start looks for deletions a crash left unfinished.
CREATE INDEX deletions_by_state ON deletions (state);

-- Where a message's arrival evidence records lie (they name its recipients): shredded with it.
CREATE TABLE arrival_records (
    message BIGINT NOT NULL,
    volume TEXT NOT NULL,
    segment BIGINT NOT NULL,
    record_offset BIGINT NOT NULL,
    record_length BIGINT NOT NULL,
    PRIMARY KEY (message, volume, segment, record_offset)
);

-- Retention runs: history, and runs asked for by a command beside the serving process.
-- state: requested | running | done | failed.
CREATE TABLE retention_runs (
    id {id},
    tenant_id BIGINT,
    dry_run BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    state TEXT NOT NULL,
    report TEXT
);

-- Manual deletions need a second administrator (four eyes). ids: JSON list. state: pending |
-- approved | rejected.
CREATE TABLE deletion_requests (
    id {id},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    query TEXT,
    ids TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    state TEXT NOT NULL,
    result TEXT
)
