-- Coffer catalog, first schema. One text for SQLite and PostgreSQL: {id} stands for the
-- dialect's auto-increment primary key. Times are Unix seconds (UTC); hashes are lowercase hex.

CREATE TABLE tenants (
    id {id},
    name TEXT NOT NULL UNIQUE,
    journal_token TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE tenant_domains (
    domain TEXT PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id)
);

CREATE TABLE messages (
    id {id},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    sha256 TEXT NOT NULL,
    volume TEXT NOT NULL,
    segment BIGINT NOT NULL,
    record_offset BIGINT NOT NULL,
    record_length BIGINT NOT NULL,
    size BIGINT NOT NULL,
    message_id TEXT,
    date BIGINT NOT NULL,
    from_addr TEXT,
    from_name TEXT,
    sender TEXT,
    on_behalf_of TEXT,
    subject TEXT,
    has_attachment BIGINT NOT NULL,
    flags BIGINT NOT NULL,
    source TEXT NOT NULL,
    archived_at BIGINT NOT NULL,
    UNIQUE (tenant_id, sha256)
);
CREATE INDEX messages_by_message_id ON messages (tenant_id, message_id);
CREATE INDEX messages_by_date ON messages (tenant_id, date);

-- kind: to | cc | bcc (headers, or a journal report's Bcc line) | envelope (SMTP RCPT, journal
-- recipients). via: '' or 'expanded:<list>' / 'forwarded:<mailbox>'.
CREATE TABLE recipients (
    message BIGINT NOT NULL REFERENCES messages(id),
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT,
    via TEXT NOT NULL,
    PRIMARY KEY (message, kind, address, via)
);
CREATE INDEX recipients_by_address ON recipients (address);

CREATE TABLE placements (
    message BIGINT NOT NULL REFERENCES messages(id),
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (message, mailbox, folder)
);

-- Messages whose index document must be (re)built. Filled in the same transaction as the change,
-- emptied by the indexer after its commit: the index catches up after any crash.
CREATE TABLE index_queue (
    message BIGINT PRIMARY KEY
);

CREATE TABLE traffic (
    bucket BIGINT NOT NULL,
    tenant_id BIGINT NOT NULL,
    source TEXT NOT NULL,
    messages BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    PRIMARY KEY (bucket, tenant_id, source)
);

CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    tenant_id BIGINT,
    actor TEXT NOT NULL,
    ip TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
-- One row: the chain's head. Updating it first serialises concurrent appends on both databases.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
