-- Response times per site, backing, surface, FHIR interaction, resource type and hour.
-- latency_quantiles_us holds quantile states for p50, p95 and p99 in microseconds: read them with
-- quantilesMerge(0.5, 0.95, 0.99)(latency_quantiles_us). ClickHouse's quantiles keeps a reservoir
-- sample of 8192 values per state, so they are exact up to 8192 calls per group and
-- estimates above that.

CREATE TABLE IF NOT EXISTS latency_hourly
(
    hour DateTime('UTC'),
    site_id String,
    backing Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2),
    surface Enum8('FHIR' = 1, 'AUTH' = 2, 'ADMIN' = 3, 'BULK' = 4, 'CONSOLE' = 5),
    interaction String,
    resource_type String,
    calls AggregateFunction(sum, UInt64),
    errors AggregateFunction(sum, UInt64),
    latency_quantiles_us AggregateFunction(quantiles(0.5, 0.95, 0.99), UInt64),
    latency_sum_us AggregateFunction(sum, UInt64),
    latency_max_us AggregateFunction(max, UInt64),
    upstream_latency_sum_us AggregateFunction(sum, UInt64),
    cache_hits AggregateFunction(sum, UInt64),
    response_bytes_sum AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, hour, surface, interaction, resource_type, backing);

CREATE MATERIALIZED VIEW IF NOT EXISTS latency_hourly_from_api_calls
TO latency_hourly
AS SELECT
    toStartOfHour(occurred_at) AS hour,
    site_id,
    backing,
    surface,
    interaction,
    resource_type,
    sumState(toUInt64(1)) AS calls,
    sumState(toUInt64(status >= 400)) AS errors,
    quantilesState(0.5, 0.95, 0.99)(latency_us) AS latency_quantiles_us,
    sumState(latency_us) AS latency_sum_us,
    maxState(latency_us) AS latency_max_us,
    sumState(upstream_latency_us) AS upstream_latency_sum_us,
    sumState(toUInt64(cache = 'HIT')) AS cache_hits,
    sumState(response_bytes) AS response_bytes_sum
FROM api_calls
GROUP BY hour, site_id, backing, surface, interaction, resource_type;
