-- The index queue is shared by its consumers (indexers; on several nodes later): a consumer leases
-- a batch, indexes it and deletes only the rows it still holds. A message queued again meanwhile
-- loses its lease, so its newer state is indexed too; a lease that runs out (its consumer died)
-- frees the rows for another.
ALTER TABLE index_queue ADD COLUMN lease TEXT;
ALTER TABLE index_queue ADD COLUMN lease_until BIGINT;
CREATE INDEX index_queue_by_lease ON index_queue (lease_until);
