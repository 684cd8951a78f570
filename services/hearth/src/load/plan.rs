//! Finding the files to load and ordering them by the `urn:uuid:` references between them.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hearth_fhir_core::bundle::{self, Semantics};
use memchr::memmem;

use super::is_ndjson_path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Json,
    Ndjson,
}

/// A file with the placeholders it defines and uses.
#[derive(Debug)]
pub struct Planned {
    pub path: PathBuf,
    pub kind: FileKind,
    pub size: u64,
    defines: HashSet<String>,
    uses: HashSet<String>,
}

/// Lists the .json and .ndjson files named or found under the given directories, sorted.
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if metadata.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if is_ndjson_path(&path) || path.extension().and_then(|e| e.to_str()) == Some("json")
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads every file and records the placeholders it defines (`fullUrl`) and uses
/// (`reference`).
pub fn plan(files: Vec<PathBuf>) -> anyhow::Result<Vec<Planned>> {
    files
        .into_iter()
        .map(|path| {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let (defines, uses) = scan_placeholders(&bytes);
            let kind = if is_ndjson_path(&path) {
                FileKind::Ndjson
            } else {
                FileKind::Json
            };
            Ok(Planned {
                path,
                kind,
                size: bytes.len() as u64,
                defines,
                uses,
            })
        })
        .collect()
}

/// Finds every JSON string that starts with `urn:uuid:` and is the value of a `fullUrl`
/// or `reference` member. It reads the bytes without parsing: a string value follows
/// `"key"` and a colon, and FHIR keys contain no escaped quotes. A file that is not valid
/// JSON gives a partial answer, which is harmless because the server rejects it anyway.
fn scan_placeholders(bytes: &[u8]) -> (HashSet<String>, HashSet<String>) {
    let mut defines = HashSet::new();
    let mut uses = HashSet::new();
    for start in memmem::find_iter(bytes, b"\"urn:uuid:") {
        let value_start = start + 1;
        let Some(length) = memchr::memchr(b'"', &bytes[value_start..]) else {
            continue;
        };
        let Ok(value) = std::str::from_utf8(&bytes[value_start..value_start + length]) else {
            continue;
        };
        match key_before(bytes, start) {
            Some(b"fullUrl") => {
                defines.insert(value.to_string());
            }
            Some(b"reference") => {
                uses.insert(value.to_string());
            }
            _ => {}
        }
    }
    (defines, uses)
}

/// Returns the member name before the string value that opens at `quote`.
fn key_before(bytes: &[u8], quote: usize) -> Option<&[u8]> {
    let mut i = quote;
    let skip_space = |i: &mut usize| {
        while *i > 0 && bytes[*i - 1].is_ascii_whitespace() {
            *i -= 1;
        }
    };
    skip_space(&mut i);
    if i == 0 || bytes[i - 1] != b':' {
        return None;
    }
    i -= 1;
    skip_space(&mut i);
    if i == 0 || bytes[i - 1] != b'"' {
        return None;
    }
    let end = i - 1;
    let start = memchr::memrchr(b'"', &bytes[..end])? + 1;
    Some(&bytes[start..end])
}

/// Orders files into waves: each file comes after the files defining the placeholders it
/// uses. Files whose placeholders no file defines (they may name resources stored
/// earlier) or that depend on each other in a cycle go into the last wave.
pub fn waves(files: &[Planned]) -> Vec<Vec<usize>> {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (index, file) in files.iter().enumerate() {
        for url in &file.defines {
            owner.insert(url, index);
        }
    }
    let depends: Vec<HashSet<usize>> = files
        .iter()
        .enumerate()
        .map(|(index, file)| {
            file.uses
                .iter()
                .filter_map(|url| owner.get(url.as_str()).copied())
                .filter(|&other| other != index)
                .collect()
        })
        .collect();

    let mut done: HashSet<usize> = HashSet::new();
    let mut waves = Vec::new();
    loop {
        let wave: Vec<usize> = (0..files.len())
            .filter(|i| !done.contains(i) && depends[*i].iter().all(|d| done.contains(d)))
            .collect();
        if wave.is_empty() {
            break;
        }
        done.extend(&wave);
        waves.push(wave);
    }
    let rest: Vec<usize> = (0..files.len()).filter(|i| !done.contains(i)).collect();
    if !rest.is_empty() {
        waves.push(rest);
    }
    waves
}

/// Splits an NDJSON file at line boundaries into chunks of at most `max_bytes` (a longer
/// single line is a chunk of its own), and checks every chunk the way the server will:
/// JSON syntax, a known resource type, a valid id. Returns each chunk's first line number
/// (1-based) and byte range. Nothing is sent when any line is bad, so a bad file stores
/// nothing; errors name the line of the file.
pub fn ndjson_chunks(body: &[u8], max_bytes: usize) -> anyhow::Result<Vec<(usize, Range<usize>)>> {
    let mut chunks = Vec::new();
    let mut chunk_start = 0;
    let mut chunk_first_line = 1;
    let mut offset = 0;
    for (index, line) in body.split_inclusive(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        if offset > chunk_start && offset + line.len() - chunk_start > max_bytes {
            chunks.push((chunk_first_line, chunk_start..offset));
            chunk_start = offset;
            chunk_first_line = number;
        }
        offset += line.len();
    }
    if offset > chunk_start {
        chunks.push((chunk_first_line, chunk_start..offset));
    }
    for (first_line, range) in &chunks {
        if let Err(error) = bundle::parse_ndjson(&body[range.clone()], Semantics::Load) {
            bail!("{}", in_file(&error.to_string(), *first_line));
        }
    }
    Ok(chunks)
}

/// Rewrites a message that starts with `line N` (a line of a chunk) to name the line of
/// the file, for a chunk that starts at `first_line`.
pub fn in_file(message: &str, first_line: usize) -> String {
    let Some(rest) = message.strip_prefix("line ") else {
        return message.to_string();
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<usize>() {
        Ok(line) => format!("line {}{}", line + first_line - 1, &rest[digits.len()..]),
        Err(_) => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(defines: &[&str], uses: &[&str]) -> Planned {
        Planned {
            path: PathBuf::new(),
            kind: FileKind::Json,
            size: 0,
            defines: defines.iter().map(|s| s.to_string()).collect(),
            uses: uses.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn scan_finds_full_urls_and_references() {
        let json = br#"{"entry":[{"fullUrl" : "urn:uuid:a","resource":{"subject":{"reference":
            "urn:uuid:b"},"identifier":[{"value":"urn:uuid:c"}]}}]}"#;
        let (defines, uses) = scan_placeholders(json);
        assert_eq!(defines, HashSet::from(["urn:uuid:a".to_string()]));
        assert_eq!(uses, HashSet::from(["urn:uuid:b".to_string()]));
    }

    #[test]
    fn waves_follow_dependencies_in_any_order() {
        let files = vec![
            planned(&["urn:uuid:g"], &["urn:uuid:p1", "urn:uuid:p2"]),
            planned(&["urn:uuid:p1"], &["urn:uuid:org"]),
            planned(&["urn:uuid:org"], &[]),
            planned(&["urn:uuid:p2"], &["urn:uuid:org", "urn:uuid:elsewhere"]),
        ];
        assert_eq!(waves(&files), vec![vec![2], vec![1, 3], vec![0]]);
    }

    #[test]
    fn cycles_go_last() {
        let files = vec![
            planned(&["urn:uuid:a"], &["urn:uuid:b"]),
            planned(&["urn:uuid:b"], &["urn:uuid:a"]),
        ];
        assert_eq!(waves(&files), vec![vec![0, 1]]);
    }

    #[test]
    fn ndjson_chunks_split_at_lines_and_reject_bad_lines() {
        let body = b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patient\"}\n";
        let chunks = ndjson_chunks(body, 60).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], (1, 0..54));
        assert_eq!(chunks[1].0, 3);

        let bad = b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":\n";
        let error = ndjson_chunks(bad, 60).unwrap_err();
        let unknown = b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patientt\"}\n";
        let type_error = ndjson_chunks(unknown, 60).unwrap_err();
        assert!(
            format!("{type_error:#}").starts_with("line 3: unknown resourceType"),
            "{type_error:#}"
        );
        assert!(
            format!("{error:#}").starts_with("line 2: invalid JSON"),
            "{error:#}"
        );
        let not_fhir = b"{\"name\":1}\n";
        assert!(ndjson_chunks(not_fhir, 60).is_err());
    }
}
