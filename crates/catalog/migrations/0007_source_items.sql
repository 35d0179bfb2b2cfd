-- Which archived message a source's own item id (a Graph message id) became, so that a move or a
-- deletion reported by the source can be applied to the message's placements. Messages are never
-- deleted because a source deleted them.
CREATE TABLE source_items (
    connection TEXT NOT NULL,
    item TEXT NOT NULL,
    message BIGINT NOT NULL REFERENCES messages(id),
    PRIMARY KEY (connection, item)
)
