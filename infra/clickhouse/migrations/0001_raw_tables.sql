-- Raw tables: one row per event of hearth.auth or hearth.api that analytics uses.
--
-- Every row carries the log partition and offset of its event. The sink skips events
-- whose offset it already stored, and the ReplacingMergeTree engines collapse any
-- duplicate that still gets in when parts merge (the sorting key contains the offset).
-- Empty strings and zero stand for missing values; an Enum8 value '' means unknown.
-- User, patient, encounter and launch identifiers are stored only as keyed hashes
-- (HMAC-SHA-256, first 8 bytes); 0 means none.

CREATE TABLE IF NOT EXISTS launches
(
    occurred_at DateTime('UTC'),
    log_partition UInt32,
    log_offset UInt64,
    event_id String,
    site_id String,
    client_id String,
    launch_hash UInt64,
    user_hash UInt64,
    patient_hash UInt64,
    encounter_hash UInt64,
    intent String,
    expires_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (site_id, occurred_at, log_partition, log_offset);

CREATE TABLE IF NOT EXISTS authorizations
(
    occurred_at DateTime('UTC'),
    log_partition UInt32,
    log_offset UInt64,
    event_id String,
    outcome Enum8('GRANTED' = 1, 'DENIED' = 2),
    site_id String,
    client_id String,
    grant_id String,
    user_type Enum8('' = 0, 'PATIENT' = 1, 'PRACTITIONER' = 2, 'RELATED_PERSON' = 3, 'SYSTEM' = 4, 'OTHER' = 5),
    user_hash UInt64,
    patient_hash UInt64,
    launch_type Enum8('STANDALONE' = 1, 'EHR' = 2),
    launch_hash UInt64,
    scope_requested String,
    scope_granted String,
    refresh_policy Enum8('' = 0, 'NONE' = 1, 'OFFLINE' = 2, 'ONLINE' = 3),
    error String,
    error_description String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (site_id, client_id, occurred_at, log_partition, log_offset);

CREATE TABLE IF NOT EXISTS token_grants
(
    occurred_at DateTime('UTC'),
    log_partition UInt32,
    log_offset UInt64,
    event_id String,
    site_id String,
    client_id String,
    grant_id String,
    grant_type Enum8('AUTHORIZATION_CODE' = 1, 'REFRESH_TOKEN' = 2, 'CLIENT_CREDENTIALS' = 3),
    scope String,
    user_type Enum8('' = 0, 'PATIENT' = 1, 'PRACTITIONER' = 2, 'RELATED_PERSON' = 3, 'SYSTEM' = 4, 'OTHER' = 5),
    user_hash UInt64,
    patient_hash UInt64,
    refresh_token_issued UInt8,
    id_token_issued UInt8,
    expires_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (site_id, client_id, occurred_at, log_partition, log_offset);

CREATE TABLE IF NOT EXISTS api_calls
(
    occurred_at DateTime('UTC'),
    log_partition UInt32,
    log_offset UInt64,
    site_id String,
    backing Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2),
    surface Enum8('FHIR' = 1, 'AUTH' = 2, 'ADMIN' = 3, 'BULK' = 4, 'CONSOLE' = 5),
    method String,
    route String,
    interaction String,
    operation String,
    resource_type String,
    status UInt16,
    error_code String,
    latency_us UInt64,
    request_bytes UInt64,
    response_bytes UInt64,
    cache Enum8('' = 0, 'HIT' = 1, 'MISS' = 2, 'BYPASS' = 3),
    upstream_status UInt16,
    upstream_latency_us UInt64,
    client_id String,
    grant_id String,
    user_type Enum8('' = 0, 'PATIENT' = 1, 'PRACTITIONER' = 2, 'RELATED_PERSON' = 3, 'SYSTEM' = 4, 'OTHER' = 5),
    user_hash UInt64,
    patient_hash UInt64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (site_id, toStartOfHour(occurred_at), client_id, log_partition, log_offset);

-- Dimensions: the latest registration of each site and app wins (highest log offset).
-- Query them with argMax(column, log_offset) grouped by the id, or with FINAL.

CREATE TABLE IF NOT EXISTS sites
(
    occurred_at DateTime('UTC'),
    log_partition UInt32,
    log_offset UInt64,
    site_id String,
    name String,
    backing Enum8('REPOSITORY' = 1, 'EHR' = 2),
    fhir_base_path String
)
ENGINE = ReplacingMergeTree(log_offset)
ORDER BY site_id;

CREATE TABLE IF NOT EXISTS apps
(
    occurred_at DateTime('UTC'),
    log_partition UInt32,
    log_offset UInt64,
    client_id String,
    name String,
    vendor String,
    client_type Enum8('PUBLIC' = 1, 'CONFIDENTIAL_SYMMETRIC' = 2, 'CONFIDENTIAL_ASYMMETRIC' = 3)
)
ENGINE = ReplacingMergeTree(log_offset)
ORDER BY client_id;
