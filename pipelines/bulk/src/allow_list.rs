//! The hosts `$import` may fetch NDJSON from over HTTP(S).
//!
//! Without this list a caller with write scopes could make the server fetch any URL,
//! including services on its internal network and cloud metadata addresses. The list is
//! empty by default, so `$import` reads only from the bulk store until an operator names
//! the hosts of their data sources.

use std::fmt;

/// One allowed host: a name or IP address, optionally with a port, or `*.domain` for
/// every subdomain of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    /// Lowercase host; for a wildcard, the domain after `*.`.
    host: String,
    wildcard: bool,
    /// `None` allows every port.
    port: Option<u16>,
}

/// Hosts that `$import` may fetch from.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HostAllowList {
    patterns: Vec<HostPattern>,
}

impl fmt::Debug for HostAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self.patterns.iter().map(HostPattern::to_string).collect();
        f.debug_list().entries(entries).finish()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl HostAllowList {
    /// Parses entries such as `data.example.org`, `data.example.org:8443`, `*.example.org`,
    /// `10.1.2.3` or `[fd00::1]:8080`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            patterns.push(parse_pattern(entry)?);
        }
        Ok(HostAllowList { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Checks that `url` is an `http` or `https` URL whose host and port the list
    /// allows; the error says why not.
    pub fn check(&self, url: &url::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{url} is not an http or https URL"));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("{url} has no host"));
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        let allowed = self.patterns.iter().any(|pattern| {
            let host_matches = if pattern.wildcard {
                host.strip_suffix(&pattern.host)
                    .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
            } else {
                host == pattern.host
            };
            host_matches && pattern.port.is_none_or(|allowed| Some(allowed) == port)
        });
        if allowed {
            return Ok(());
        }
        if self.is_empty() {
            return Err(format!(
                "$import from http(s) URLs is turned off on this server, so {url} cannot be read; an administrator can allow its host in [bulk] import_allowed_hosts"
            ));
        }
        Err(format!(
            "the host of {url} is not in this server's [bulk] import_allowed_hosts"
        ))
    }
}

fn parse_pattern(entry: &str) -> Result<HostPattern, String> {
    let invalid = |reason: &str| {
        format!(
            "invalid import host '{entry}': {reason}; use a form such as data.example.org, data.example.org:8443 or *.example.org"
        )
    };
    let (wildcard, rest) = match entry.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, entry),
    };
    if rest.contains(['/', '@', '?', '#', '*']) {
        return Err(invalid(
            "it must be a host, with an optional port, and no path",
        ));
    }
    // Parsing as a URL normalizes the host the same way request URLs are normalized
    // (case, IPv4 forms, IPv6 brackets), so the comparison in `check` is like for like.
    let url = url::Url::parse(&format!("http://{rest}")).map_err(|e| invalid(&e.to_string()))?;
    let host = url
        .host_str()
        .ok_or_else(|| invalid("it has no host"))?
        .to_ascii_lowercase();
    let port = if has_port(rest) {
        Some(url.port().unwrap_or(80))
    } else {
        None
    };
    Ok(HostPattern {
        host,
        wildcard,
        port,
    })
}

/// Whether an entry names a port: a colon after the host, outside IPv6 brackets.
fn has_port(entry: &str) -> bool {
    match entry.rfind(']') {
        Some(end) => entry[end..].contains(':'),
        None => entry.contains(':'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    #[test]
    fn empty_list_rejects_every_url() {
        let list = HostAllowList::default();
        let error = list
            .check(&url("https://data.example.org/a.ndjson"))
            .unwrap_err();
        assert!(error.contains("import_allowed_hosts"), "{error}");
    }

    #[test]
    fn exact_host_allows_any_port() {
        let list = HostAllowList::parse(&["Data.Example.org"]).unwrap();
        assert!(list.check(&url("https://data.example.org/a")).is_ok());
        assert!(list.check(&url("http://DATA.example.org:8080/a")).is_ok());
        assert!(
            list.check(&url("https://data.example.org.evil.test/a"))
                .is_err()
        );
        assert!(list.check(&url("https://other.example.org/a")).is_err());
    }

    #[test]
    fn port_must_match_when_given() {
        let list = HostAllowList::parse(&["127.0.0.1:8443"]).unwrap();
        assert!(list.check(&url("http://127.0.0.1:8443/a")).is_ok());
        assert!(list.check(&url("http://127.0.0.1:8444/a")).is_err());
        assert!(list.check(&url("http://127.0.0.1/a")).is_err());
        let default_port = HostAllowList::parse(&["files.example.org:443"]).unwrap();
        assert!(
            default_port
                .check(&url("https://files.example.org/a"))
                .is_ok()
        );
    }

    #[test]
    fn wildcard_allows_subdomains_only() {
        let list = HostAllowList::parse(&["*.example.org"]).unwrap();
        assert!(list.check(&url("https://a.example.org/x")).is_ok());
        assert!(list.check(&url("https://a.b.example.org/x")).is_ok());
        assert!(list.check(&url("https://example.org/x")).is_err());
        assert!(list.check(&url("https://badexample.org/x")).is_err());
    }

    #[test]
    fn other_ip_spellings_do_not_slip_through() {
        let list = HostAllowList::parse(&["data.example.org"]).unwrap();
        for text in [
            "http://127.0.0.1/x",
            "http://2130706433/x",
            "http://0x7f.0.0.1/x",
            "http://[::1]/x",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(list.check(&url(text)).is_err(), "{text}");
        }
        let loopback = HostAllowList::parse(&["127.0.0.1"]).unwrap();
        // The URL parser normalizes the decimal form to the dotted one, so it matches.
        assert!(loopback.check(&url("http://2130706433/x")).is_ok());
    }

    #[test]
    fn ipv6_entries_parse() {
        let list = HostAllowList::parse(&["[fd00::1]:8080"]).unwrap();
        assert!(list.check(&url("http://[fd00::1]:8080/x")).is_ok());
        assert!(list.check(&url("http://[fd00::1]:8081/x")).is_err());
    }

    #[test]
    fn only_http_schemes() {
        let list = HostAllowList::parse(&["data.example.org"]).unwrap();
        assert!(list.check(&url("ftp://data.example.org/x")).is_err());
        assert!(list.check(&url("file:///etc/passwd")).is_err());
    }

    #[test]
    fn malformed_entries_are_rejected() {
        for entry in [
            "https://data.example.org",
            "data.example.org/path",
            "*",
            "a*.b",
        ] {
            assert!(HostAllowList::parse(&[entry]).is_err(), "{entry}");
        }
    }
}
