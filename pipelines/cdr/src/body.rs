//! The stored form of resource JSON: zstd-compressed, in `versions.body`.
//!
//! Synthea resources shrink about sixfold, which cuts the pages every commit writes to the
//! WAL and copies back at checkpoints. Decompressing one resource takes microseconds, so
//! reads stay cheap.

use std::cell::RefCell;

use zstd::bulk::{Compressor, Decompressor};

/// zstd level 1, the fastest of the standard levels: bulk loads compress every resource on
/// the write path, and higher levels gain little on JSON this small.
const LEVEL: i32 = 1;

/// The largest JSON a stored body may decompress to, a guard against a corrupt size field.
const MAX_JSON_BYTES: usize = 1 << 30;

thread_local! {
    // zstd contexts are costly to set up and are reused for every body on a thread.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses resource JSON for storage. The output depends only on the input and the
/// zstd library version, so a replay writes the same bytes.
pub fn compress(json: &str) -> Vec<u8> {
    COMPRESSOR.with_borrow_mut(|slot| {
        let result = match slot {
            Some(compressor) => compressor.compress(json.as_bytes()),
            None => Compressor::new(LEVEL)
                .and_then(|compressor| slot.insert(compressor).compress(json.as_bytes())),
        };
        // With a valid level, compressing in memory fails only when memory runs out.
        result
            .unwrap_or_else(|error| panic!("zstd failed to compress {} bytes: {error}", json.len()))
    })
}

/// Decompresses a stored body back into JSON text.
pub fn decompress(body: &[u8]) -> rusqlite::Result<String> {
    let invalid = |reason: String| {
        rusqlite::Error::FromSqlConversionFailure(
            body.len(),
            rusqlite::types::Type::Blob,
            reason.into(),
        )
    };
    let bytes = DECOMPRESSOR
        .with_borrow_mut(|slot| match slot {
            Some(decompressor) => decompressor.decompress(body, MAX_JSON_BYTES),
            None => Decompressor::new().and_then(|decompressor| {
                slot.insert(decompressor).decompress(body, MAX_JSON_BYTES)
            }),
        })
        .map_err(|error| invalid(format!("stored resource body is not valid zstd: {error}")))?;
    String::from_utf8(bytes)
        .map_err(|error| invalid(format!("stored resource body is not UTF-8: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip() {
        let json = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Ångström"}]}"#;
        let body = compress(json);
        assert_eq!(decompress(&body).unwrap(), json);
    }

    #[test]
    fn compression_is_deterministic() {
        let json = r#"{"resourceType":"Observation","status":"final"}"#.repeat(20);
        assert_eq!(compress(&json), compress(&json));
    }

    #[test]
    fn invalid_body_is_an_error() {
        assert!(decompress(b"not zstd").is_err());
    }
}
