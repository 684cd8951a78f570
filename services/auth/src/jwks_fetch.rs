//! Fetching apps' JSON Web Key Sets from their `jwks_uri`.
//!
//! Every fetch verifies the server's TLS certificate against the system's trusted roots
//! plus the CA certificates of the `extra_ca_file` setting, follows no redirects, stops
//! after [`MAX_JWKS_BYTES`] and [`JWKS_FETCH_TIMEOUT`], and returns to the client only the
//! kind of failure. The detail is logged.
//!
//! A `jwks_uri` that an administrator registered may name any host, private networks
//! included. One that came from anonymous dynamic registration passed a check that its
//! host is public, but DNS can change after that check (DNS rebinding), so such a URI is
//! fetched through a resolver that drops every address that is not public and refuses the
//! fetch when none is left. The connection goes to the addresses that resolver returned,
//! so there is no second lookup to race.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::oauth_error::{OAuthError, OAuthResult};

/// The largest JWKS document Hearth reads from a client's `jwks_uri`.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The time limit of a whole JWKS fetch, body included.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Who chose a `jwks_uri`, which decides the addresses a fetch may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriOrigin {
    /// An administrator or a holder of the initial access token: any address.
    Trusted,
    /// An anonymous dynamic registration: public addresses only.
    Anonymous,
}

/// The HTTP clients of JWKS fetches.
#[derive(Clone)]
pub struct JwksFetcher {
    trusted: reqwest::Client,
    public_only: reqwest::Client,
}

impl JwksFetcher {
    /// Builds the clients. `extra_ca_pem` is a PEM bundle of CA certificates to trust
    /// besides the system's roots.
    pub fn new(extra_ca_pem: Option<&[u8]>) -> Result<JwksFetcher, String> {
        let extra_roots = match extra_ca_pem {
            Some(pem) => {
                let roots = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("the CA bundle is not valid PEM: {e}"))?;
                if roots.is_empty() {
                    return Err("the CA bundle holds no certificate".to_string());
                }
                roots
            }
            None => Vec::new(),
        };
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(3))
                .timeout(JWKS_FETCH_TIMEOUT)
                .tls_certs_merge(extra_roots.clone())
        };
        let build_error = |e: reqwest::Error| format!("cannot build the JWKS client: {e}");
        Ok(JwksFetcher {
            trusted: builder().build().map_err(build_error)?,
            public_only: builder()
                .dns_resolver(PublicOnlyResolver)
                .build()
                .map_err(build_error)?,
        })
    }

    /// Fetches a client's JWKS document as text.
    pub async fn fetch(
        &self,
        client_id: &str,
        url: &str,
        origin: UriOrigin,
    ) -> OAuthResult<String> {
        let failed = |reason: &str| {
            OAuthError::invalid_client(format!(
                "the client's JWKS could not be fetched from its jwks_uri: {reason}"
            ))
        };
        if origin == UriOrigin::Anonymous && names_private_address(url) {
            tracing::warn!(
                client_id,
                "an anonymous client's jwks_uri names a private address"
            );
            return Err(failed("its host is not a public address"));
        }
        let client = match origin {
            UriOrigin::Trusted => &self.trusted,
            UriOrigin::Anonymous => &self.public_only,
        };
        match tokio::time::timeout(JWKS_FETCH_TIMEOUT, read_document(client, url)).await {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(failure)) => {
                tracing::warn!(client_id, detail = %failure.detail, "fetching a client's JWKS failed");
                Err(failed(failure.reason))
            }
            Err(_) => {
                tracing::warn!(
                    client_id,
                    seconds = JWKS_FETCH_TIMEOUT.as_secs(),
                    "fetching a client's JWKS timed out"
                );
                Err(failed("the request timed out"))
            }
        }
    }
}

/// A failed fetch: a short reason for the client and the detail for the log.
struct FetchFailure {
    reason: &'static str,
    detail: String,
}

impl FetchFailure {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        FetchFailure {
            reason,
            detail: detail.into(),
        }
    }

    fn from_request(error: &reqwest::Error) -> Self {
        let detail = error_chain(error);
        let reason = if detail.contains("invalid peer certificate") {
            "the server's TLS certificate is not trusted or does not name its host"
        } else if detail.contains(NO_PUBLIC_ADDRESS) {
            "its host resolves to no public address"
        } else if error.is_timeout() {
            "the request timed out"
        } else if error.is_connect() {
            "the connection failed"
        } else {
            "the request failed"
        };
        FetchFailure::new(reason, detail)
    }
}

/// Reads the document at `url`, checking the status and the size.
async fn read_document(client: &reqwest::Client, url: &str) -> Result<String, FetchFailure> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| FetchFailure::from_request(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchFailure::new(
            "the server returned an error status",
            format!("the server returned status {status}"),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchFailure::from_request(&e))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchFailure::new(
                "the document is too large",
                format!("the document is larger than {MAX_JWKS_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body)
        .map_err(|_| FetchFailure::new("the document is not UTF-8", "the document is not UTF-8"))
}

/// An error and its sources, joined, because reqwest's own message leaves out the TLS
/// or DNS cause.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

const NO_PUBLIC_ADDRESS: &str = "resolves to no public address";

/// Resolves host names with the system resolver and keeps only public addresses.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = resolved.filter(|a| is_public_ip(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} {NO_PUBLIC_ADDRESS}").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Whether the URL's host is an IP address literal that is not public. The HTTP client
/// connects to such a literal without asking the resolver, so it is checked here.
fn names_private_address(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => !is_public_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public_ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => false,
        None => true,
    }
}

/// Whether an address is reachable on the public internet: not loopback, private,
/// link-local, shared (RFC 6598), unspecified, broadcast, multicast, documentation,
/// benchmarking (RFC 2544) or reserved, and not an IPv6 form of an IPv4 address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(ip) => {
            let segments = ip.segments();
            // 64:ff9b::/96 translates to IPv4 (NAT64), so it can reach private addresses.
            let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            let documentation = segments[0] == 0x2001 && segments[1] == 0x0db8;
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_unique_local()
                || ip.is_unicast_link_local()
                || ip.is_multicast()
                || ip.to_ipv4_mapped().is_some()
                || ip.to_ipv4().is_some()
                || nat64
                || documentation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ip_table() {
        for public in ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(is_public_ip(ip), "{public} counts as private");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!is_public_ip(ip), "{private} counts as public");
        }
    }

    #[tokio::test]
    async fn resolver_drops_loopback() {
        let name: Name = "localhost".parse().unwrap();
        let error = match PublicOnlyResolver.resolve(name).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        assert!(error.to_string().contains(NO_PUBLIC_ADDRESS), "{error}");
    }

    #[tokio::test]
    async fn anonymous_fetch_skips_private_literals() {
        let fetcher = JwksFetcher::new(None).unwrap();
        for url in [
            "https://127.0.0.1:9/jwks",
            "https://[::1]:9/jwks",
            "https://10.0.0.1/",
        ] {
            let error = fetcher
                .fetch("app", url, UriOrigin::Anonymous)
                .await
                .expect_err(url);
            assert_eq!(error.error, "invalid_client", "{url}");
            assert!(
                error.description.contains("not a public address"),
                "{url}: {}",
                error.description
            );
        }
    }

    #[tokio::test]
    async fn anonymous_fetch_of_loopback_name_fails() {
        let fetcher = JwksFetcher::new(None).unwrap();
        let error = fetcher
            .fetch("app", "https://localhost:9/jwks", UriOrigin::Anonymous)
            .await
            .expect_err("localhost is not public");
        assert!(
            error.description.contains("no public address"),
            "{}",
            error.description
        );
    }

    #[test]
    fn ca_bundle_must_hold_a_certificate() {
        assert!(JwksFetcher::new(Some(b"not a certificate")).is_err());
        assert!(JwksFetcher::new(Some(b"")).is_err());
    }
}
