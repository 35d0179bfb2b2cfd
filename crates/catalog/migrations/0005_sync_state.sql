-- Where each source connection stands in each of its scopes (an IMAP folder: "UIDVALIDITY:UID";
-- a Graph folder: its delta link). Advanced only after what it covers is durable.
CREATE TABLE sync_state (
    connection TEXT NOT NULL,
    scope TEXT NOT NULL,
    cursor TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (connection, scope)
);
