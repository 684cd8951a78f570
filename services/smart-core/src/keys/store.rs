//! The key directory: one PKCS#8 PEM file per key and the `keys.json` index.
//!
//! Files are written to a temporary name, synced and renamed into place, so a crash
//! leaves either the old or the new version. Key files are written first and the index
//! last, so a crash can leave an unused key file but never an index that names a
//! missing key.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{KeyError, KeyStatus, SigningAlgorithm};

/// The name of the index file inside the key directory.
pub(super) const INDEX_FILE: &str = "keys.json";

/// The contents of `keys.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Index {
    pub keys: Vec<IndexEntry>,
}

/// One key in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct IndexEntry {
    /// The RFC 7638 thumbprint of the public key.
    pub kid: String,
    pub alg: SigningAlgorithm,
    /// The PEM file's name inside the key directory.
    pub file: String,
    pub status: KeyStatus,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// When the key stopped signing, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> KeyError {
    KeyError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the key directory, readable only by its owner, if it does not exist yet.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }

    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|error| io_error("create key directory", dir, error))
}

/// Reads `keys.json`, or returns `None` when the directory has none yet.
pub(super) fn read_index(dir: &Path) -> Result<Option<Index>, KeyError> {
    let path = dir.join(INDEX_FILE);

    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read key index", &path, error)),
    };

    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| KeyError::InvalidIndex {
            path,
            reason: error.to_string(),
        })
}

pub(super) fn write_index(dir: &Path, index: &Index) -> Result<(), KeyError> {
    let text = serde_json::to_string_pretty(index).map_err(|error| KeyError::InvalidIndex {
        path: dir.join(INDEX_FILE),
        reason: error.to_string(),
    })?;
    write_private_file(dir, INDEX_FILE, text.as_bytes())
}

/// Returns the path of `file` inside `dir`, rejecting names that would leave it.
pub(super) fn key_path(dir: &Path, file: &str) -> Result<PathBuf, KeyError> {
    let is_plain_name = !file.is_empty()
        && file != "."
        && file != ".."
        && !file.contains(['/', '\\'])
        && Path::new(file).file_name() == Some(file.as_ref());

    if is_plain_name {
        Ok(dir.join(file))
    } else {
        Err(KeyError::InvalidIndex {
            path: dir.join(INDEX_FILE),
            reason: format!("key file name `{file}` is not a plain file name"),
        })
    }
}

pub(super) fn read_key_file(dir: &Path, file: &str) -> Result<String, KeyError> {
    let path = key_path(dir, file)?;
    fs::read_to_string(&path).map_err(|error| io_error("read key file", &path, error))
}

/// Writes `contents` to `dir/name` with mode 0600 through a temporary file and a rename.
pub(super) fn write_private_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), KeyError> {
    let path = key_path(dir, name)?;
    let temporary = dir.join(format!(".{name}.tmp"));

    remove_if_present(&temporary)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);

    let mut file = options
        .open(&temporary)
        .map_err(|error| io_error("create", &temporary, error))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|error| io_error("write", &temporary, error))?;

    fs::rename(&temporary, &path).map_err(|error| io_error("rename into place", &path, error))?;
    sync_dir(dir)
}

/// Deletes `dir/name`; a file that is already gone is not an error.
pub(super) fn remove_key_file(dir: &Path, name: &str) -> Result<(), KeyError> {
    remove_if_present(&key_path(dir, name)?)
}

fn remove_if_present(path: &Path) -> Result<(), KeyError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error("remove", path, error))
        }
        _ => Ok(()),
    }
}

/// Syncs the directory so a completed rename survives a crash (POSIX needs the
/// directory itself synced for that).
fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| io_error("sync key directory", dir, error))?;
    Ok(())
}
