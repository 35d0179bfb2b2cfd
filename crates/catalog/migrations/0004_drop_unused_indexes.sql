-- Searches by address and Message-ID go through the search index; these catalog indexes cost
-- about a fifth of the catalog's size and served no query.
DROP INDEX recipients_by_address;
DROP INDEX messages_by_message_id;
