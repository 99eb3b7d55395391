-- Each log's key index (runtime/src/session/keys.rs): the effect keys its
-- events closed, so that a resident session need not hold them all. A cache,
-- written aside from the events by the session in batches: `key_marks.mark`
-- says that every key of the log closed at a seq below it is in `key_index`.
-- Deleting rows costs only speed.
CREATE TABLE key_index (
    log      uuid NOT NULL,
    key      text COLLATE "C" NOT NULL,
    decided  boolean NOT NULL,
    PRIMARY KEY (log, key)
);

CREATE TABLE key_marks (
    log   uuid PRIMARY KEY,
    mark  int8 NOT NULL
);
