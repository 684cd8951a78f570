-- Response times per site, surface, FHIR interaction and hour, with t-digest quantile
-- states like latency_daily. A report over a range that does not start or end at
-- midnight UTC reads the whole days inside it from latency_daily and the hours before
-- the first and after the last midnight from this table. Both hold quantilesTDigest
-- states, so quantilesTDigestMerge combines them into one estimate. The reservoir states
-- of latency_hourly cannot be merged with t-digests. Only the columns of the latency
-- report are kept, which makes the rows fewer than latency_hourly's (no backing and no
-- resource type in the key).

CREATE TABLE IF NOT EXISTS latency_digest_hourly
(
    hour DateTime('UTC'),
    site_id String,
    surface Enum8('FHIR' = 1, 'AUTH' = 2, 'ADMIN' = 3, 'BULK' = 4, 'CONSOLE' = 5),
    interaction String,
    calls AggregateFunction(sum, UInt64),
    errors AggregateFunction(sum, UInt64),
    latency_quantiles_us AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_sum_us AggregateFunction(sum, UInt64),
    latency_max_us AggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, hour, surface, interaction);

-- Fills the table from an existing deployment's api_calls once, as in 0005.
-- NOTE: `hearth analytics migrate` run while a sink writes can miss the rows inserted
-- between this statement and the creation of the view.
INSERT INTO latency_digest_hourly
SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    surface,
    interaction,
    sumState(toUInt64(1)) AS calls,
    sumState(toUInt64(status >= 400)) AS errors,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_us) AS latency_quantiles_us,
    sumState(latency_us) AS latency_sum_us,
    maxState(latency_us) AS latency_max_us
FROM api_calls FINAL
WHERE (SELECT count() FROM latency_digest_hourly) = 0
GROUP BY hour, site_id, surface, interaction;

CREATE MATERIALIZED VIEW IF NOT EXISTS latency_digest_hourly_from_api_calls
TO latency_digest_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    surface,
    interaction,
    sumState(toUInt64(1)) AS calls,
    sumState(toUInt64(status >= 400)) AS errors,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_us) AS latency_quantiles_us,
    sumState(latency_us) AS latency_sum_us,
    maxState(latency_us) AS latency_max_us
FROM api_calls
GROUP BY hour, site_id, surface, interaction;
