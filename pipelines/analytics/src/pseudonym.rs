//! Keyed hashes that stand for user, patient, encounter and launch identifiers in
//! ClickHouse.
//!
//! A pseudonym is the first 8 bytes (big-endian) of HMAC-SHA-256 over a domain name and
//! the identifier, with a 32-byte key that never leaves the Hearth host. Counting distinct
//! values and joining tables works on the hashes, but without the key nobody can test
//! whether a known patient id is among them. 0 means "no identifier", so a hash that
//! happens to be 0 is stored as 1.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::Sha256;

use crate::{Error, Result};

/// Length of a generated key in bytes.
const KEY_BYTES: usize = 32;

/// The pseudonym function with its key.
#[derive(Clone)]
pub struct Pseudonyms {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(***)")
    }
}

impl Pseudonyms {
    pub fn from_key(key: &[u8]) -> Pseudonyms {
        let mac = match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        Pseudonyms { mac }
    }

    /// Reads the hex key from `path`, creating the file with a random key (readable by
    /// the owner only) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Pseudonyms> {
        let io_error = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = decode_hex(text.trim()).ok_or_else(|| {
                    Error::Config(format!(
                        "the pseudonym key in {} is not hex of at least 16 bytes",
                        path.display()
                    ))
                })?;
                Ok(Pseudonyms::from_key(&key))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_BYTES];
                if let Err(error) = SysRng.try_fill_bytes(&mut key) {
                    panic!("the operating system's random number generator failed: {error}");
                }
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_error)?;
                }
                write_private(path, &encode_hex(&key)).map_err(io_error)?;
                tracing::info!(path = %path.display(), "created a key file");
                Ok(Pseudonyms::from_key(&key))
            }
            Err(error) => Err(io_error(error)),
        }
    }

    /// Pseudonym of a Hearth user id.
    pub fn user(&self, user_id: Option<&str>) -> u64 {
        user_id.map_or(0, |id| self.hash("user", &[id]))
    }

    /// Pseudonym of a patient id. Patient ids are local to the site's FHIR server, so
    /// the site is part of the input.
    pub fn patient(&self, site_id: &str, patient: Option<&str>) -> u64 {
        patient.map_or(0, |id| self.hash("patient", &[site_id, id]))
    }

    /// Pseudonym of an encounter id, local to its site like patient ids.
    pub fn encounter(&self, site_id: &str, encounter: Option<&str>) -> u64 {
        encounter.map_or(0, |id| self.hash("encounter", &[site_id, id]))
    }

    /// Pseudonym of an EHR launch parameter, which lets a launch be followed to its
    /// authorization without storing the parameter itself.
    pub fn launch(&self, launch_id: Option<&str>) -> u64 {
        launch_id.map_or(0, |id| self.hash("launch", &[id]))
    }

    /// Keyed hash of an export job's upstream URL with the site and the client that
    /// started the job. An EHR-backed site seals the job URLs it hands out with it, so
    /// only that client can use them.
    pub fn bulk_job(&self, site_id: &str, client_id: &str, location: &str) -> u64 {
        self.hash("bulk-job", &[site_id, client_id, location])
    }

    fn hash(&self, domain: &str, parts: &[&str]) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(domain.as_bytes());
        for part in parts {
            // A zero byte separates the parts, so ("ab", "c") and ("a", "bc") differ.
            mac.update(&[0]);
            mac.update(part.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first).max(1)
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Decodes a hex key of at least 16 bytes.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() < 32 || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_pseudonym() {
        let a = Pseudonyms::from_key(b"0123456789abcdef0123456789abcdef");
        let b = Pseudonyms::from_key(b"0123456789abcdef0123456789abcdef");
        assert_eq!(a.user(Some("fannie")), b.user(Some("fannie")));
        assert_ne!(a.user(Some("fannie")), a.user(Some("dwain")));
    }

    #[test]
    fn other_key_other_pseudonym() {
        let a = Pseudonyms::from_key(b"0123456789abcdef0123456789abcdef");
        let b = Pseudonyms::from_key(b"fedcba9876543210fedcba9876543210");
        assert_ne!(a.patient("main", Some("p1")), b.patient("main", Some("p1")));
    }

    #[test]
    fn domains_and_parts_are_separated() {
        let p = Pseudonyms::from_key(b"0123456789abcdef0123456789abcdef");
        assert_ne!(p.user(Some("x")), p.launch(Some("x")));
        assert_ne!(p.patient("ab", Some("c")), p.patient("a", Some("bc")));
        assert_ne!(p.patient("main", Some("1")), p.encounter("main", Some("1")));
    }

    #[test]
    fn missing_identifier_is_zero() {
        let p = Pseudonyms::from_key(b"0123456789abcdef0123456789abcdef");
        assert_eq!(p.user(None), 0);
        assert_eq!(p.patient("main", None), 0);
        assert_ne!(p.user(Some("")), 0);
    }

    #[test]
    fn key_file_created_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let first = Pseudonyms::load_or_create(&path).unwrap();
        let second = Pseudonyms::load_or_create(&path).unwrap();
        assert_eq!(first.user(Some("u")), second.user(Some("u")));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), KEY_BYTES * 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn short_or_invalid_key_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "abcd").unwrap();
        assert!(Pseudonyms::load_or_create(&path).is_err());
        std::fs::write(&path, "zz".repeat(16)).unwrap();
        assert!(Pseudonyms::load_or_create(&path).is_err());
    }
}
