-- Large tool parts (an image an MCP tool returned, say), stored once per
-- tenant and digest beside the logs: the event that holds the part carries
-- only `{"blob": {"digest", "size"}}`. Written before that event; a blob no
-- event refers to (after a crash between the two) is harmless.
CREATE TABLE blobs (
    tenant  text COLLATE "C" NOT NULL,
    digest  text COLLATE "C" NOT NULL,
    bytes   bytea NOT NULL,
    PRIMARY KEY (tenant, digest)
);
