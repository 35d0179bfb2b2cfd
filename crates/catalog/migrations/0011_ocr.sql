-- Text read from the pictures of messages by OCR ([extract] ocr): a cache of what the originals
-- give, so that a message indexed again keeps it without its pictures being read again. OCR has
-- its own queue, so plain indexing never waits for it.
CREATE TABLE ocr_queue (message BIGINT PRIMARY KEY);
-- One row per picture read (its text may be empty): a message with rows has been read.
CREATE TABLE ocr_text (
    message BIGINT NOT NULL,
    part BIGINT NOT NULL,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (message, part)
);
