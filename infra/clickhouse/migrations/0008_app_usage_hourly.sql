-- Usage per app, site, user type and hour: the columns of usage_daily per hour and user
-- type. usage_hourly has the same figures, but it is sorted by site first and read in
-- granules of 8192 rows, so a report for one app, or for the hours at the edges of a
-- range, reads and merges the uniq states of nearly the whole table. This table is sorted
-- by app, site and hour with granules of 128 rows, like usage_daily, so such a report
-- reads only the rows it needs. Reports read it for the hours before the first and after
-- the last midnight of a range and for the hour-of-week pattern. Three materialized views
-- fill it from the raw tables, like usage_hourly.

CREATE TABLE IF NOT EXISTS app_usage_hourly
(
    hour DateTime('UTC'),
    client_id String,
    site_id String,
    user_type Enum8('' = 0, 'PATIENT' = 1, 'PRACTITIONER' = 2, 'RELATED_PERSON' = 3, 'SYSTEM' = 4, 'OTHER' = 5),
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
ORDER BY (client_id, site_id, hour, user_type)
SETTINGS index_granularity = 128;

-- Fills the table from the raw tables of an existing deployment, once: the condition on
-- count() makes a repeated run of this file insert nothing. The sink applies migrations
-- before it writes, so no rows arrive between this statement and the views below.
-- NOTE: `hearth analytics migrate` run while a sink writes can miss the rows inserted
-- between this statement and the creation of the views.
INSERT INTO app_usage_hourly
SELECT
    toStartOfHour(occurred_at) AS hour,
    client_id,
    site_id,
    user_type,
    sumState(toUInt64(1)) AS calls,
    sumState(toUInt64(surface = 'FHIR')) AS fhir_calls,
    sumState(toUInt64(status >= 400)) AS errors,
    sumState(toUInt64(0)) AS launches,
    sumState(toUInt64(0)) AS ehr_launches,
    sumState(toUInt64(0)) AS denials,
    sumState(toUInt64(0)) AS token_grants,
    uniqIfState(user_hash, user_hash != 0) AS users,
    uniqIfState(patient_hash, patient_hash != 0) AS patients
FROM api_calls FINAL
WHERE (SELECT count() FROM app_usage_hourly) = 0
GROUP BY hour, client_id, site_id, user_type
UNION ALL
SELECT
    toStartOfHour(occurred_at) AS hour,
    client_id,
    site_id,
    user_type,
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
WHERE (SELECT count() FROM app_usage_hourly) = 0
GROUP BY hour, client_id, site_id, user_type
UNION ALL
SELECT
    toStartOfHour(occurred_at) AS hour,
    client_id,
    site_id,
    user_type,
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
WHERE (SELECT count() FROM app_usage_hourly) = 0
GROUP BY hour, client_id, site_id, user_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS app_usage_hourly_from_api_calls
TO app_usage_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    client_id,
    site_id,
    user_type,
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
GROUP BY hour, client_id, site_id, user_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS app_usage_hourly_from_authorizations
TO app_usage_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    client_id,
    site_id,
    user_type,
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
GROUP BY hour, client_id, site_id, user_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS app_usage_hourly_from_token_grants
TO app_usage_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    client_id,
    site_id,
    user_type,
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
GROUP BY hour, client_id, site_id, user_type;
