-- Counters of the listeners (connections, TLS, messages, bytes, rejects by reason), per hour,
-- listener and tenant (0 when no tenant is known yet, e.g. a refused connection).
CREATE TABLE listener_figures (
    bucket BIGINT NOT NULL,
    listener TEXT NOT NULL,
    tenant_id BIGINT NOT NULL,
    figure TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (bucket, listener, tenant_id, figure)
);
