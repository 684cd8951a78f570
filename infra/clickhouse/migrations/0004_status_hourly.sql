-- API calls per app, HTTP status, error code, site, surface and hour, for error rates:
-- calls with status 400 and above are errors. A SummingMergeTree, so sum(calls) reads it.

CREATE TABLE IF NOT EXISTS status_hourly
(
    hour DateTime('UTC'),
    client_id String,
    status UInt16,
    error_code String,
    site_id String,
    surface Enum8('FHIR' = 1, 'AUTH' = 2, 'ADMIN' = 3, 'BULK' = 4, 'CONSOLE' = 5),
    calls UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (client_id, status, error_code, site_id, surface, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS status_hourly_from_api_calls
TO status_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    client_id,
    status,
    error_code,
    site_id,
    surface,
    count() AS calls
FROM api_calls
GROUP BY hour, client_id, status, error_code, site_id, surface;
