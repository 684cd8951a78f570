//! Key to partition mapping shared by both backends.
//!
//! A keyed record goes to partition `(murmur2(key) & 0x7fff_ffff) % partitions`, where
//! `murmur2` is 32-bit MurmurHash2 with seed `0x9747b28c`. Kafka's Java producer and
//! librdkafka's `murmur2_random` partitioner use this function, so a key lands in the same
//! partition on the embedded log, on Kafka through rdkafka and from any Java client.
//!
//! An empty key means "no key": such records are spread over the partitions (round robin in
//! the embedded log, a random partition in librdkafka) and their order is not kept.

/// Returns the partition of a non-empty `key` in a topic with `partitions` partitions.
///
/// # Panics
///
/// Panics if `partitions` is zero.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Computes 32-bit MurmurHash2 with Kafka's seed, byte for byte as
/// `org.apache.kafka.common.utils.Utils.murmur2` does.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Kafka folds the length in as a Java int, so only its low 32 bits count.
    let mut h = SEED ^ (data.len() as u32);

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's published murmur2 test vectors, as Java signed ints. The Kafka contract run
    /// also checks key placement against librdkafka.
    #[test]
    fn murmur2_matches_kafka_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];

        for (input, expected) in cases {
            assert_eq!(
                murmur2(input) as i32,
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partition_for_key_is_in_range() {
        for partitions in 1..20 {
            for i in 0..200 {
                let key = format!("patient-{i}");
                assert!(partition_for_key(key.as_bytes(), partitions) < partitions);
            }
        }
    }

    #[test]
    fn partition_for_key_masks_sign_bit() {
        // murmur2("foobar") is negative as a Java int; Kafka masks the sign bit first.
        assert_eq!(partition_for_key(b"foobar", 50), 16);
    }
}
