-- The journal's tables (docs/postgres.md). Text that is compared or sorted
-- is COLLATE "C", so orders are bytewise, as in redb and the in-memory journal.

-- Every log: its metadata, its head, the projections of its events that
-- change in place (flags, current guest), and its writer lease.
CREATE TABLE logs (
    id            uuid PRIMARY KEY,
    tenant        text COLLATE "C" NOT NULL,
    -- The name that last bound to it, while that name still points here.
    name          text COLLATE "C",
    guest_name    text NOT NULL,
    guest_digest  text COLLATE "C" NOT NULL,
    created_at    int8 NOT NULL,
    -- The head: the seq the next event gets, and the hash of the last one.
    next_seq      int8 NOT NULL,
    last_hash     bytea NOT NULL,
    finished      boolean NOT NULL DEFAULT false,
    failed        boolean NOT NULL DEFAULT false,
    -- A fork's parent and the last seq it shares with it: the fork's own
    -- events start at parent_seq + 1.
    parent_log    uuid,
    parent_seq    int8,
    -- Whether it counts against its tenant's sessions (every log but a
    -- compaction's continuation).
    session       boolean NOT NULL,
    -- The writer lease: its holder (a worker id) and its epoch, which only
    -- ever grows, so an append fenced by an older epoch is refused.
    lease_worker  uuid,
    lease_epoch   int8 NOT NULL DEFAULT 0
);
CREATE INDEX logs_by_tenant ON logs (tenant, id);

-- Events, only ever inserted. `body` is the canonical JSON the hash covers,
-- byte for byte: it is never re-encoded.
CREATE TABLE events (
    log   uuid NOT NULL,
    seq   int8 NOT NULL,
    at    int8 NOT NULL,
    hash  bytea NOT NULL,
    body  bytea NOT NULL,
    PRIMARY KEY (log, seq)
);

CREATE TABLE names (
    tenant  text COLLATE "C" NOT NULL,
    name    text COLLATE "C" NOT NULL,
    log     uuid NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- How many logs, and sessions, each tenant holds: a session limit is checked
-- against this row, which the creating transaction locks.
CREATE TABLE tenants (
    tenant    text COLLATE "C" PRIMARY KEY,
    logs      int8 NOT NULL,
    sessions  int8 NOT NULL
);

-- The effects requested and not yet ended. `effect` is the requested effect's
-- JSON; `sleep_until` is set for a `sleep`, so due timers are found by index.
CREATE TABLE open (
    log                uuid NOT NULL,
    key                text COLLATE "C" NOT NULL,
    effect             bytea NOT NULL,
    awaiting_approval  boolean NOT NULL,
    is_ask             boolean NOT NULL,
    sleep_until        int8,
    PRIMARY KEY (log, key)
);
CREATE INDEX open_timers ON open (sleep_until) WHERE sleep_until IS NOT NULL;

CREATE TABLE guests (
    digest  text COLLATE "C" PRIMARY KEY,
    bytes   bytea NOT NULL
);

CREATE TABLE guest_names (
    tenant  text COLLATE "C" NOT NULL,
    name    text COLLATE "C" NOT NULL,
    digest  text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- A cache of guests' state after a seq: deleting rows costs only speed.
CREATE TABLE snapshots (
    log     uuid NOT NULL,
    seq     int8 NOT NULL,
    digest  text COLLATE "C" NOT NULL,
    record  bytea NOT NULL,
    PRIMARY KEY (log, seq, digest)
);

-- Workers and their heartbeats: a lease is live while its holder's heartbeat
-- is younger than the lease TTL.
CREATE TABLE workers (
    id         uuid PRIMARY KEY,
    heartbeat  timestamptz NOT NULL
);

-- Refuses the statement (and so the commit's savepoint) when `ok` is false.
-- The SQLSTATE says which rule refused it; the message carries the detail.
CREATE FUNCTION logbook_require(ok boolean, state text, detail text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = detail;
    END IF;
END $$;

-- Moves a log's head past an append and writes the append's events, in the
-- statement that checks it: the lease epoch (when the append carries one),
-- the expected next seq and the hash it chains from. Refusals: LB001 no such
-- log, LB002 fenced, LB003 conflict (the message is the actual next seq),
-- LB004 the hash differs.
CREATE FUNCTION logbook_append(p_log uuid, p_expected int8, p_prev bytea, p_lease int8,
                               p_next int8, p_hash bytea, p_seqs int8[], p_ats int8[],
                               p_hashes bytea[], p_bodies bytea[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    cur record;
BEGIN
    UPDATE logs SET next_seq = p_next, last_hash = p_hash
     WHERE id = p_log AND next_seq = p_expected AND last_hash = p_prev
       AND (p_lease IS NULL OR lease_epoch = p_lease);
    IF FOUND THEN
        INSERT INTO events (log, seq, at, hash, body)
        SELECT p_log, * FROM unnest(p_seqs, p_ats, p_hashes, p_bodies);
        RETURN;
    END IF;
    SELECT next_seq, last_hash, lease_epoch INTO cur FROM logs WHERE id = p_log;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'LB001', MESSAGE = 'unknown log';
    ELSIF p_lease IS NOT NULL AND cur.lease_epoch <> p_lease THEN
        RAISE EXCEPTION USING ERRCODE = 'LB002', MESSAGE = cur.lease_epoch::text;
    ELSIF cur.next_seq <> p_expected THEN
        RAISE EXCEPTION USING ERRCODE = 'LB003', MESSAGE = cur.next_seq::text;
    ELSE
        RAISE EXCEPTION USING ERRCODE = 'LB004', MESSAGE = 'the head hash differs';
    END IF;
END $$;
