-- Sending hosts allowed to deliver a tenant's journal reports (CIDR). No row: any host.
CREATE TABLE tenant_networks (
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    cidr TEXT NOT NULL,
    PRIMARY KEY (tenant_id, cidr)
);
