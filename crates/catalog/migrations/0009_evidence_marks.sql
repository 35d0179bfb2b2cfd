-- The catalog is derived from the evidence records in the volumes. Per volume: the sequence
-- number below which its evidence is applied, and where those records end (segment, offset). It is
-- written in the same transaction as what it applies, so a writing open replays exactly what
-- follows, and the store's recovery never cuts below it.
CREATE TABLE evidence_marks (
    volume TEXT PRIMARY KEY,
    applied BIGINT NOT NULL,
    segment BIGINT NOT NULL,
    end_offset BIGINT NOT NULL
);
-- NULL while a tenant's current state (name, journal token, domains, networks) has no evidence
-- record yet: new, changed, or from before evidence. The writing process records it.
ALTER TABLE tenants ADD COLUMN evidenced BIGINT
