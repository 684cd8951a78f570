-- Response times per site, backing, surface, FHIR interaction, resource type and day.
-- Reports over whole days read it instead of latency_hourly. Its quantiles are t-digest
-- states (quantilesTDigest), which compress a day's calls into a bounded number of
-- centroids, where the reservoir of latency_hourly's quantiles holds up to 8192 values:
-- merging a month of daily t-digests reads far less. t-digest quantiles are estimates
-- and may differ slightly from the hourly table's for the same calls. Granules of 128 rows, as in usage_daily, let a report for
-- one site skip the rows of the others.

CREATE TABLE IF NOT EXISTS latency_daily
(
    day Date,
    site_id String,
    backing Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2),
    surface Enum8('FHIR' = 1, 'AUTH' = 2, 'ADMIN' = 3, 'BULK' = 4, 'CONSOLE' = 5),
    interaction String,
    resource_type String,
    calls AggregateFunction(sum, UInt64),
    errors AggregateFunction(sum, UInt64),
    latency_quantiles_us AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
    latency_sum_us AggregateFunction(sum, UInt64),
    latency_max_us AggregateFunction(max, UInt64),
    upstream_latency_sum_us AggregateFunction(sum, UInt64),
    cache_hits AggregateFunction(sum, UInt64),
    response_bytes_sum AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, surface, interaction, resource_type, backing)
SETTINGS index_granularity = 128;

-- Fills the table from an existing deployment's api_calls once, as in 0005.
INSERT INTO latency_daily
SELECT
    toDate(occurred_at) AS day,
    site_id,
    backing,
    surface,
    interaction,
    resource_type,
    sumState(toUInt64(1)) AS calls,
    sumState(toUInt64(status >= 400)) AS errors,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_us) AS latency_quantiles_us,
    sumState(latency_us) AS latency_sum_us,
    maxState(latency_us) AS latency_max_us,
    sumState(upstream_latency_us) AS upstream_latency_sum_us,
    sumState(toUInt64(cache = 'HIT')) AS cache_hits,
    sumState(response_bytes) AS response_bytes_sum
FROM api_calls FINAL
WHERE (SELECT count() FROM latency_daily) = 0
GROUP BY day, site_id, backing, surface, interaction, resource_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS latency_daily_from_api_calls
TO latency_daily
AS SELECT
    toDate(occurred_at) AS day,
    site_id,
    backing,
    surface,
    interaction,
    resource_type,
    sumState(toUInt64(1)) AS calls,
    sumState(toUInt64(status >= 400)) AS errors,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_us) AS latency_quantiles_us,
    sumState(latency_us) AS latency_sum_us,
    maxState(latency_us) AS latency_max_us,
    sumState(upstream_latency_us) AS upstream_latency_sum_us,
    sumState(toUInt64(cache = 'HIT')) AS cache_hits,
    sumState(response_bytes) AS response_bytes_sum
FROM api_calls
GROUP BY day, site_id, backing, surface, interaction, resource_type;
