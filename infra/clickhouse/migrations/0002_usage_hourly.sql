-- Usage per site, app, user type, site backing and hour: API calls, app launches, token
-- grants and distinct users and patients. Three materialized views fill it, one per raw
-- table, so every column is an aggregate state: read it with sumMerge and uniqIfMerge.
-- A launch is an authorization the user granted (EHR launch or standalone launch).
-- Rows from authorizations and token_grants have backing ''.

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
ORDER BY (site_id, client_id, hour, user_type, backing);

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
