-- Folds app_usage_hourly into usage_hourly: one hourly usage table instead of two with
-- the same figures. Every insert into api_calls aggregated its calls into both tables, and
-- with their uniq states they cost ClickHouse more CPU per call than any other rollup.
-- The new usage_hourly keeps the columns of 0002 (backing included) in the order of
-- app_usage_hourly from 0008: sorted by app, site and hour, read in granules of 128 rows,
-- so a report for one app or for a few hours reads only those rows. Queries that filter
-- by site first still work but read more of the table.
--
-- The fill reads api_calls FINAL through a subquery: on 18.16, FINAL adds the sorting
-- key's toStartOfHour(occurred_at) to the columns it reads, and the same expression in
-- the outer SELECT then fails with "Column ... already exists" once the table has
-- several parts.
--
-- The file drops both tables with their views, creates usage_hourly again and fills it
-- from the raw tables, which hold every event. So a run that stopped halfway can be
-- repeated from the start and gives the same table.
-- NOTE: `hearth analytics migrate` run while a sink writes loses the rows inserted
-- between the drop of the views and their creation at the end of this file.

DROP TABLE IF EXISTS usage_hourly_from_api_calls;
DROP TABLE IF EXISTS usage_hourly_from_authorizations;
DROP TABLE IF EXISTS usage_hourly_from_token_grants;
DROP TABLE IF EXISTS app_usage_hourly_from_api_calls;
DROP TABLE IF EXISTS app_usage_hourly_from_authorizations;
DROP TABLE IF EXISTS app_usage_hourly_from_token_grants;
DROP TABLE IF EXISTS app_usage_hourly;
DROP TABLE IF EXISTS usage_hourly;

CREATE TABLE IF NOT EXISTS usage_hourly
(
    hour DateTime('UTC'),
    site_id String,
    client_id String,
    user_type Enum8('' = 0, 'PATIENT' = 1, 'PRACTITIONER' = 2, 'RELATED_PERSON' = 3, 'SYSTEM' = 4, 'OTHER' = 5),
    backing Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2),
    calls AggregateFunction(sum, UInt64),
    fhir_calls AggregateFunction(sum, UInt64),
    errors AggregateFunction(sum, UInt64),
    launches AggregateFunction(sum, UInt64),
    ehr_launches AggregateFunction(sum, UInt64),
    denials AggregateFunction(sum, UInt64),
    token_grants AggregateFunction(sum, UInt64),
    users AggregateFunction(uniqIf, UInt64, UInt8),
    patients AggregateFunction(uniqIf, UInt64, UInt8)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (client_id, site_id, hour, user_type, backing)
SETTINGS index_granularity = 128;

INSERT INTO usage_hourly
SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    client_id,
    user_type,
    backing,
    sumState(toUInt64(1)) AS calls,
    sumState(toUInt64(surface = 'FHIR')) AS fhir_calls,
    sumState(toUInt64(status >= 400)) AS errors,
    sumState(toUInt64(0)) AS launches,
    sumState(toUInt64(0)) AS ehr_launches,
    sumState(toUInt64(0)) AS denials,
    sumState(toUInt64(0)) AS token_grants,
    uniqIfState(user_hash, user_hash != 0) AS users,
    uniqIfState(patient_hash, patient_hash != 0) AS patients
FROM (SELECT * FROM api_calls FINAL)
GROUP BY hour, site_id, client_id, user_type, backing
UNION ALL
SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    client_id,
    user_type,
    CAST('' AS Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2)) AS backing,
    sumState(toUInt64(0)) AS calls,
    sumState(toUInt64(0)) AS fhir_calls,
    sumState(toUInt64(0)) AS errors,
    sumState(toUInt64(outcome = 'GRANTED')) AS launches,
    sumState(toUInt64(outcome = 'GRANTED' AND launch_type = 'EHR')) AS ehr_launches,
    sumState(toUInt64(outcome = 'DENIED')) AS denials,
    sumState(toUInt64(0)) AS token_grants,
    uniqIfState(user_hash, user_hash != 0) AS users,
    uniqIfState(patient_hash, patient_hash != 0) AS patients
FROM authorizations FINAL
GROUP BY hour, site_id, client_id, user_type, backing
UNION ALL
SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    client_id,
    user_type,
    CAST('' AS Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2)) AS backing,
    sumState(toUInt64(0)) AS calls,
    sumState(toUInt64(0)) AS fhir_calls,
    sumState(toUInt64(0)) AS errors,
    sumState(toUInt64(0)) AS launches,
    sumState(toUInt64(0)) AS ehr_launches,
    sumState(toUInt64(0)) AS denials,
    sumState(toUInt64(1)) AS token_grants,
    uniqIfState(user_hash, user_hash != 0) AS users,
    uniqIfState(patient_hash, patient_hash != 0) AS patients
FROM token_grants FINAL
GROUP BY hour, site_id, client_id, user_type, backing;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_from_api_calls
TO usage_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    client_id,
    user_type,
    backing,
    sumState(toUInt64(1)) AS calls,
    sumState(toUInt64(surface = 'FHIR')) AS fhir_calls,
    sumState(toUInt64(status >= 400)) AS errors,
    sumState(toUInt64(0)) AS launches,
    sumState(toUInt64(0)) AS ehr_launches,
    sumState(toUInt64(0)) AS denials,
    sumState(toUInt64(0)) AS token_grants,
    uniqIfState(user_hash, user_hash != 0) AS users,
    uniqIfState(patient_hash, patient_hash != 0) AS patients
FROM api_calls
GROUP BY hour, site_id, client_id, user_type, backing;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_from_authorizations
TO usage_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    client_id,
    user_type,
    CAST('' AS Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2)) AS backing,
    sumState(toUInt64(0)) AS calls,
    sumState(toUInt64(0)) AS fhir_calls,
    sumState(toUInt64(0)) AS errors,
    sumState(toUInt64(outcome = 'GRANTED')) AS launches,
    sumState(toUInt64(outcome = 'GRANTED' AND launch_type = 'EHR')) AS ehr_launches,
    sumState(toUInt64(outcome = 'DENIED')) AS denials,
    sumState(toUInt64(0)) AS token_grants,
    uniqIfState(user_hash, user_hash != 0) AS users,
    uniqIfState(patient_hash, patient_hash != 0) AS patients
FROM authorizations
GROUP BY hour, site_id, client_id, user_type, backing;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_from_token_grants
TO usage_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    client_id,
    user_type,
    CAST('' AS Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2)) AS backing,
    sumState(toUInt64(0)) AS calls,
    sumState(toUInt64(0)) AS fhir_calls,
    sumState(toUInt64(0)) AS errors,
    sumState(toUInt64(0)) AS launches,
    sumState(toUInt64(0)) AS ehr_launches,
    sumState(toUInt64(0)) AS denials,
    sumState(toUInt64(1)) AS token_grants,
    uniqIfState(user_hash, user_hash != 0) AS users,
    uniqIfState(patient_hash, patient_hash != 0) AS patients
FROM token_grants
GROUP BY hour, site_id, client_id, user_type, backing;
