-- Usage per site, app and day: the columns of usage_hourly without user type and backing.
-- Reports over whole days read it instead of usage_hourly, so a month of usage is 30 rows
-- per site and app instead of 720 or more. The users and patients columns hold the same
-- uniqIf states as usage_hourly, so both tables count distinct users the same way.
-- Three materialized views fill it, one per raw table, like usage_hourly. Its rows are
-- few but their uniq states are large, and ClickHouse reads and merges whole granules,
-- so granules of 128 rows instead of 8192 let a report for one app skip the other apps.

CREATE TABLE IF NOT EXISTS usage_daily
(
    day Date,
    site_id String,
    client_id String,
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
PARTITION BY toYYYYMM(day)
ORDER BY (client_id, site_id, day)
SETTINGS index_granularity = 128;

-- Fills the table from the raw tables of an existing deployment, once: the condition on
-- count() makes a repeated run of this file insert nothing. The sink applies migrations
-- before it writes, so no rows arrive between this statement and the views below.
-- NOTE: `hearth analytics migrate` run while a sink writes can miss the rows inserted
-- between this statement and the creation of the views.
INSERT INTO usage_daily
SELECT
    toDate(occurred_at) AS day,
    site_id,
    client_id,
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
WHERE (SELECT count() FROM usage_daily) = 0
GROUP BY day, site_id, client_id
UNION ALL
SELECT
    toDate(occurred_at) AS day,
    site_id,
    client_id,
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
WHERE (SELECT count() FROM usage_daily) = 0
GROUP BY day, site_id, client_id
UNION ALL
SELECT
    toDate(occurred_at) AS day,
    site_id,
    client_id,
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
WHERE (SELECT count() FROM usage_daily) = 0
GROUP BY day, site_id, client_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_from_api_calls
TO usage_daily
AS SELECT
    toDate(occurred_at) AS day,
    site_id,
    client_id,
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
GROUP BY day, site_id, client_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_from_authorizations
TO usage_daily
AS SELECT
    toDate(occurred_at) AS day,
    site_id,
    client_id,
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
GROUP BY day, site_id, client_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_from_token_grants
TO usage_daily
AS SELECT
    toDate(occurred_at) AS day,
    site_id,
    client_id,
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
GROUP BY day, site_id, client_id;
