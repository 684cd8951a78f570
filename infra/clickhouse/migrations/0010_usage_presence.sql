-- The days on which each user and each patient was seen, per app and site: one row per
-- user or patient, app, site and window of 64 days, with a 64-bit mask whose bit N is set
-- when they were seen on day N of the window. A window starts on a day number
-- (days since 1970-01-01 UTC) that is a multiple of 64.
--
-- Reports count distinct users and patients over whole days from this table: a row counts
-- when its mask has a bit inside the range, and uniqExact counts the hashes of those rows.
-- A month of usage then reads one row per user or patient and app, where the uniq states
-- of usage_daily hold one hash per user or patient, app and day, which all have to be
-- merged. The count is exact and right before ClickHouse merges parts: an unmerged part
-- holds part of a mask, and a user counts when any of their rows has a bit in the range.
--
-- Views on api_calls, authorizations and token_grants fill it, as for usage_daily. Two
-- views on api_calls (users, patients) cost less per call than one with ARRAY JOIN.

CREATE TABLE IF NOT EXISTS usage_presence
(
    window UInt16,
    client_id String,
    site_id String,
    kind Enum8('USER' = 1, 'PATIENT' = 2),
    hash UInt64,
    days AggregateFunction(groupBitOr, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY window
ORDER BY (client_id, site_id, window, kind, hash);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_presence_users_from_api_calls
TO usage_presence
AS SELECT
    toUInt16(intDiv(toRelativeDayNum(occurred_at), 64)) AS window,
    client_id,
    site_id,
    CAST('USER' AS Enum8('USER' = 1, 'PATIENT' = 2)) AS kind,
    user_hash AS hash,
    groupBitOrState(bitShiftLeft(toUInt64(1), toRelativeDayNum(occurred_at) % 64)) AS days
FROM api_calls
WHERE user_hash != 0
GROUP BY window, client_id, site_id, hash;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_presence_patients_from_api_calls
TO usage_presence
AS SELECT
    toUInt16(intDiv(toRelativeDayNum(occurred_at), 64)) AS window,
    client_id,
    site_id,
    CAST('PATIENT' AS Enum8('USER' = 1, 'PATIENT' = 2)) AS kind,
    patient_hash AS hash,
    groupBitOrState(bitShiftLeft(toUInt64(1), toRelativeDayNum(occurred_at) % 64)) AS days
FROM api_calls
WHERE patient_hash != 0
GROUP BY window, client_id, site_id, hash;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_presence_from_authorizations
TO usage_presence
AS SELECT
    toUInt16(intDiv(toRelativeDayNum(occurred_at), 64)) AS window,
    client_id,
    site_id,
    CAST(seen.1 AS Enum8('USER' = 1, 'PATIENT' = 2)) AS kind,
    seen.2 AS hash,
    groupBitOrState(bitShiftLeft(toUInt64(1), toRelativeDayNum(occurred_at) % 64)) AS days
FROM authorizations
ARRAY JOIN [(1, user_hash), (2, patient_hash)] AS seen
WHERE seen.2 != 0
GROUP BY window, client_id, site_id, kind, hash;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_presence_from_token_grants
TO usage_presence
AS SELECT
    toUInt16(intDiv(toRelativeDayNum(occurred_at), 64)) AS window,
    client_id,
    site_id,
    CAST(seen.1 AS Enum8('USER' = 1, 'PATIENT' = 2)) AS kind,
    seen.2 AS hash,
    groupBitOrState(bitShiftLeft(toUInt64(1), toRelativeDayNum(occurred_at) % 64)) AS days
FROM token_grants
ARRAY JOIN [(1, user_hash), (2, patient_hash)] AS seen
WHERE seen.2 != 0
GROUP BY window, client_id, site_id, kind, hash;

-- Fills the table from the raw tables of an existing deployment, after the views exist.
-- A bit set twice is still one bit, so rows that both a view and this fill write, rows
-- that a replay stored twice, and a repeated run of the file change no count. A sink
-- writing during the migration therefore loses nothing here. The raw tables are read
-- without FINAL for the same reason.
INSERT INTO usage_presence
SELECT
    toUInt16(intDiv(toRelativeDayNum(occurred_at), 64)) AS window,
    client_id,
    site_id,
    CAST(seen.1 AS Enum8('USER' = 1, 'PATIENT' = 2)) AS kind,
    seen.2 AS hash,
    groupBitOrState(bitShiftLeft(toUInt64(1), toRelativeDayNum(occurred_at) % 64)) AS days
FROM
(
    SELECT occurred_at, client_id, site_id, user_hash, patient_hash FROM api_calls
    UNION ALL
    SELECT occurred_at, client_id, site_id, user_hash, patient_hash FROM authorizations
    UNION ALL
    SELECT occurred_at, client_id, site_id, user_hash, patient_hash FROM token_grants
)
ARRAY JOIN [(1, user_hash), (2, patient_hash)] AS seen
WHERE seen.2 != 0
GROUP BY window, client_id, site_id, kind, hash;
