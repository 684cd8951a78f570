//! The on-disk record frame: encoding by appenders and the writer, decoding by readers
//! and the recovery scan.
//!
//! All integers are little-endian.
//!
//! ```text
//! offset  size  field
//!      0     4  length     bytes that follow this field (24 + key length + value length)
//!      4     4  crc        CRC-32C (Castagnoli) of every byte after this field
//!      8     8  offset     u64, the record's offset in its partition
//!     16     8  timestamp  i64, milliseconds since the Unix epoch
//!     24     4  key_len    u32
//!     28     k  key
//!   28+k     v  value      runs to the end of the frame
//! ```

use bytes::Bytes;

/// Bytes before the key: length, crc, offset, timestamp and key length.
pub(crate) const HEADER_LEN: usize = 28;
/// Size of the length field, which the CRC does not cover.
const LENGTH_LEN: usize = 4;
/// Smallest valid value of the length field: crc, offset, timestamp and key length.
const MIN_LENGTH: u32 = (HEADER_LEN - LENGTH_LEN) as u32;

/// Returns the size of the frame for a key and value of these lengths.
pub(crate) fn frame_len(key_len: usize, value_len: usize) -> usize {
    HEADER_LEN + key_len + value_len
}

/// Builds a frame whose offset, timestamp and CRC the partition writer fills in with
/// [`seal_frame`] once it has assigned the offset.
pub(crate) fn encode_frame(key: &[u8], value: &[u8]) -> Vec<u8> {
    let total = frame_len(key.len(), value.len());
    let mut frame = Vec::with_capacity(total);

    // The caller has checked that key and value fit the maximum record size, which is
    // below u32::MAX, so these casts cannot truncate.
    frame.extend_from_slice(&((total - LENGTH_LEN) as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 20]);
    frame.extend_from_slice(&(key.len() as u32).to_le_bytes());
    frame.extend_from_slice(key);
    frame.extend_from_slice(value);
    frame
}

/// Writes the offset and timestamp into a frame from [`encode_frame`] and computes its CRC.
pub(crate) fn seal_frame(frame: &mut [u8], offset: u64, timestamp_ms: i64) {
    frame[8..16].copy_from_slice(&offset.to_le_bytes());
    frame[16..24].copy_from_slice(&timestamp_ms.to_le_bytes());
    let crc = crc32c::crc32c(&frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// A record decoded from a frame. Key and value share the buffer they were read into.
#[derive(Debug)]
pub(crate) struct DecodedRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Bytes,
    pub value: Bytes,
    /// Size of the whole frame, header included.
    pub frame_len: usize,
}

/// Outcome of decoding the frame at one position of a buffer.
#[derive(Debug)]
pub(crate) enum Decoded {
    Record(DecodedRecord),
    /// The buffer ends inside the frame, which needs this many bytes in total.
    Incomplete(usize),
    /// The bytes are not a valid frame with the expected offset.
    Invalid(String),
}

/// Returns the whole frame's length from its length field: `Ok(None)` when fewer than
/// four bytes are available, an error when the field is too small to be a frame.
pub(crate) fn frame_len_from_prefix(prefix: &[u8]) -> Result<Option<usize>, String> {
    let Some(field) = prefix.get(..LENGTH_LEN) else {
        return Ok(None);
    };
    let length = u32::from_le_bytes([field[0], field[1], field[2], field[3]]);
    if length < MIN_LENGTH {
        return Err(format!(
            "length field {length} is below the minimum of {MIN_LENGTH}"
        ));
    }
    Ok(Some(LENGTH_LEN + length as usize))
}

/// Fields of a frame header that passed its checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameHeader {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key_len: usize,
}

/// Checks the CRC of a complete frame and that its offset is `expected_offset`.
pub(crate) fn verify_frame(frame: &[u8], expected_offset: u64) -> Result<FrameHeader, String> {
    let stored_crc = read_u32(frame, 4);
    let actual_crc = crc32c::crc32c(&frame[8..]);
    if stored_crc != actual_crc {
        return Err(format!(
            "CRC mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}"
        ));
    }

    let offset = read_u64(frame, 8);
    if offset != expected_offset {
        return Err(format!(
            "record has offset {offset}, expected {expected_offset}"
        ));
    }
    let key_len = read_u32(frame, 24) as usize;
    if key_len > frame.len() - HEADER_LEN {
        return Err(format!(
            "key length {key_len} exceeds the frame of {} bytes",
            frame.len()
        ));
    }

    Ok(FrameHeader {
        offset,
        timestamp_ms: read_u64(frame, 16) as i64,
        key_len,
    })
}

/// Decodes the frame that starts at `at` in `buf`, checking its CRC and that its offset
/// is `expected_offset`.
pub(crate) fn decode(buf: &Bytes, at: usize, expected_offset: u64) -> Decoded {
    let rest = &buf[at..];
    let total = match frame_len_from_prefix(rest) {
        Ok(Some(total)) => total,
        Ok(None) => return Decoded::Incomplete(HEADER_LEN),
        Err(reason) => return Decoded::Invalid(reason),
    };
    if rest.len() < total {
        return Decoded::Incomplete(total);
    }

    let header = match verify_frame(&rest[..total], expected_offset) {
        Ok(header) => header,
        Err(reason) => return Decoded::Invalid(reason),
    };
    let key_start = at + HEADER_LEN;
    let value_start = key_start + header.key_len;
    Decoded::Record(DecodedRecord {
        offset: header.offset,
        timestamp_ms: header.timestamp_ms,
        key: buf.slice(key_start..value_start),
        value: buf.slice(value_start..at + total),
        frame_len: total,
    })
}

fn read_u32(frame: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&frame[at..at + 4]);
    u32::from_le_bytes(bytes)
}

fn read_u64(frame: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&frame[at..at + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &[u8], value: &[u8], offset: u64, timestamp_ms: i64) -> Vec<u8> {
        let mut frame = encode_frame(key, value);
        seal_frame(&mut frame, offset, timestamp_ms);
        frame
    }

    #[test]
    fn frame_round_trip() {
        let frame = sealed(b"patient-1", b"{\"resourceType\":\"Patient\"}", 42, 1_700);
        assert_eq!(frame.len(), frame_len(9, 26));

        let buf = Bytes::from(frame);
        let Decoded::Record(record) = decode(&buf, 0, 42) else {
            panic!("frame did not decode");
        };
        assert_eq!(record.offset, 42);
        assert_eq!(record.timestamp_ms, 1_700);
        assert_eq!(&record.key[..], b"patient-1");
        assert_eq!(&record.value[..], b"{\"resourceType\":\"Patient\"}");
        assert_eq!(record.frame_len, buf.len());
    }

    #[test]
    fn empty_key_and_value() {
        let buf = Bytes::from(sealed(b"", b"", 0, -5));
        let Decoded::Record(record) = decode(&buf, 0, 0) else {
            panic!("frame did not decode");
        };
        assert!(record.key.is_empty());
        assert!(record.value.is_empty());
        assert_eq!(record.timestamp_ms, -5);
    }

    #[test]
    fn flipped_bit_fails_crc() {
        let mut frame = sealed(b"k", b"value", 7, 1);
        let last = frame.len() - 1;
        frame[last] ^= 0x01;
        let decoded = decode(&Bytes::from(frame), 0, 7);
        assert!(matches!(decoded, Decoded::Invalid(reason) if reason.contains("CRC")));
    }

    #[test]
    fn wrong_offset_is_invalid() {
        let buf = Bytes::from(sealed(b"k", b"v", 7, 1));
        assert!(matches!(decode(&buf, 0, 8), Decoded::Invalid(_)));
    }

    #[test]
    fn truncated_frame_is_incomplete() {
        let frame = sealed(b"k", b"value", 0, 1);
        let total = frame.len();

        let short = Bytes::copy_from_slice(&frame[..total - 1]);
        assert!(matches!(decode(&short, 0, 0), Decoded::Incomplete(n) if n == total));

        let header_only = Bytes::copy_from_slice(&frame[..3]);
        assert!(matches!(decode(&header_only, 0, 0), Decoded::Incomplete(n) if n == HEADER_LEN));
    }

    #[test]
    fn zeroes_are_invalid() {
        let zeroes = Bytes::from(vec![0u8; 64]);
        assert!(matches!(decode(&zeroes, 0, 0), Decoded::Invalid(_)));
    }
}
