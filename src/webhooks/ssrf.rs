//! Outbound safety for webhook callbacks (SSRF defence).
//!
//! Three layers, all driven by one [`CallbackPolicy`]:
//!
//! 1. [`CallbackPolicy::check_url`]: syntactic checks (scheme, https, userinfo, host,
//!    allowlist) and, when the host is an IP literal, the address check. Hyper never
//!    consults the DNS resolver for IP literals, so the delivery code must call this
//!    before **every** attempt.
//! 2. [`CallbackPolicy::check_resolved`]: resolves the host and refuses the URL if
//!    **any** address is forbidden. Meant for subscribe time, to give the caller a
//!    clear error early.
//! 3. [`build_client`]: a `reqwest::Client` whose DNS resolver ([`PolicyResolver`])
//!    drops forbidden addresses, so the connection goes only to an address that was
//!    checked (no DNS-rebinding window between check and use). It follows no
//!    redirects and uses no proxy.
//!
//! With `allow_private = true` (development only) private, loopback, link-local and
//! other non-public ranges are allowed and plain http is accepted. Cloud metadata
//! endpoints (e.g. `169.254.169.254`, `metadata.google.internal`) stay refused even
//! then: they are never a legitimate callback target.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// How long name resolution may take before the host counts as unresolvable.
const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for the connect phase (the total deadline still applies).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// User agent sent with every delivery.
pub const USER_AGENT: &str = "insights-connector-webhooks/1";

/// Which callback URLs may be called.
#[derive(Clone, Debug, Default)]
pub struct CallbackPolicy {
    /// Development only: allow loopback/private/link-local/... destinations and plain http.
    pub allow_private: bool,
    /// Hosts that may be called. Empty = any host.
    pub allowed_hosts: Vec<HostPattern>,
}

/// A host allowlist entry: an exact host (`prod-12.westus.logic.azure.com`, `203.0.113.7`,
/// `[2001:db8::1]`) or a wildcard `*.logic.azure.com`, which matches one or more labels in
/// front of the suffix but not the bare suffix itself. Case-insensitive; a trailing dot is
/// ignored; internationalised names are compared in their punycode form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern(PatternKind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternKind {
    Exact(String),
    Suffix(String),
    Ip(IpAddr),
}

/// Why a host pattern could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPatternError {
    #[error("host pattern is empty")]
    Empty,
    #[error("host pattern '{0}' is invalid: '*' is only allowed as a leading '*.' label")]
    MisplacedWildcard(String),
    #[error("host pattern '{0}' is not a valid host name")]
    InvalidHost(String),
}

impl FromStr for HostPattern {
    type Err = HostPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(HostPatternError::Empty);
        }
        if let Some(suffix) = s.strip_prefix("*.") {
            if suffix.contains('*') {
                return Err(HostPatternError::MisplacedWildcard(s.to_string()));
            }
            return match parse_host(suffix) {
                Some(PatternKind::Exact(d)) => Ok(HostPattern(PatternKind::Suffix(d))),
                _ => Err(HostPatternError::InvalidHost(s.to_string())),
            };
        }
        if s.contains('*') {
            return Err(HostPatternError::MisplacedWildcard(s.to_string()));
        }
        parse_host(s)
            .map(HostPattern)
            .ok_or_else(|| HostPatternError::InvalidHost(s.to_string()))
    }
}

/// Normalises one host the way the `url` crate does for http(s) URLs.
fn parse_host(s: &str) -> Option<PatternKind> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(PatternKind::Ip(ip));
    }
    match Host::parse(s).ok()? {
        Host::Domain(d) => {
            let d = trim_dot(&d);
            let labels_ok = !d.is_empty() && d.split('.').all(|l| !l.is_empty());
            labels_ok.then(|| PatternKind::Exact(d.to_string()))
        }
        Host::Ipv4(v4) => Some(PatternKind::Ip(IpAddr::V4(v4))),
        Host::Ipv6(v6) => Some(PatternKind::Ip(IpAddr::V6(v6))),
    }
}

fn trim_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            PatternKind::Exact(d) => f.write_str(d),
            PatternKind::Suffix(d) => write!(f, "*.{d}"),
            PatternKind::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            PatternKind::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

impl HostPattern {
    /// Does this pattern match a domain name (lowercase, as produced by `url`)?
    fn matches_domain(&self, host: &str) -> bool {
        let host = trim_dot(host);
        match &self.0 {
            PatternKind::Exact(d) => host.eq_ignore_ascii_case(d),
            PatternKind::Suffix(suffix) => {
                if host.len() <= suffix.len() + 1 {
                    return false;
                }
                let (prefix, rest) = host.split_at(host.len() - suffix.len() - 1);
                rest.as_bytes()[0] == b'.'
                    && rest[1..].eq_ignore_ascii_case(suffix)
                    && prefix.split('.').all(|label| !label.is_empty())
            }
            PatternKind::Ip(_) => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(&self.0, PatternKind::Ip(p) if *p == ip)
    }
}

/// Why a callback URL or destination was refused. The messages are meant for the
/// subscriber and name the rule that was broken.
#[derive(Debug, thiserror::Error)]
pub enum CallbackRefusal {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("URL scheme '{0}' is not allowed (only http and https)")]
    Scheme(String),
    #[error("https is required for callback URLs")]
    HttpsRequired,
    #[error("URL has credentials (userinfo); they are not allowed in callback URLs")]
    Credentials,
    #[error("URL has no host")]
    MissingHost,
    #[error("host '{0}' is not in the callback host allowlist")]
    HostNotAllowed(String),
    #[error("host '{host}' is {reason} (not allowed)")]
    ForbiddenHost { host: String, reason: &'static str },
    #[error("address {addr} is {reason} (not allowed)")]
    ForbiddenAddress { addr: IpAddr, reason: &'static str },
    #[error("could not resolve host '{0}'")]
    Unresolvable(String),
}

/// Severity of a non-public destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Not public; allowed only with `allow_private`.
    NonPublic,
    /// Cloud metadata: refused even with `allow_private`.
    Metadata,
}

const METADATA: &str = "a cloud metadata endpoint";

/// Known cloud metadata addresses (AWS/GCP/Azure IMDS, AWS ECS task metadata, Azure
/// WireServer, Alibaba, AWS IMDS over IPv6).
fn is_metadata_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => matches!(
            v4.octets(),
            [169, 254, 169, 254] | [169, 254, 170, 2] | [168, 63, 129, 16] | [100, 100, 100, 200]
        ),
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    }
}

/// Host names that are refused by name (compared without a trailing dot, lowercase).
const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

fn classify_name(host: &str) -> Option<(Class, &'static str)> {
    let host = trim_dot(host).to_ascii_lowercase();
    if METADATA_HOSTS.contains(&host.as_str()) {
        return Some((Class::Metadata, METADATA));
    }
    // RFC 6761: localhost names always resolve to loopback.
    if host == "localhost" || host.ends_with(".localhost") {
        return Some((Class::NonPublic, "loopback"));
    }
    None
}

/// Reason a host name is refused by name alone (cloud metadata names, `localhost`), or
/// `None`. Whether the reason applies with `allow_private` depends on the kind: see
/// [`CallbackPolicy`].
pub fn forbidden_host_name(host: &str) -> Option<&'static str> {
    classify_name(host).map(|(_, reason)| reason)
}

/// Why `ip` is not a public unicast destination, or `None` if it is public.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    classify_ip(ip).map(|(_, reason)| reason)
}

fn classify_ip(ip: IpAddr) -> Option<(Class, &'static str)> {
    if is_metadata_ip(ip) {
        return Some((Class::Metadata, METADATA));
    }
    let reason = match ip {
        IpAddr::V4(v4) => return v4_reason(v4).map(|r| (Class::NonPublic, r)),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return classify_ip(IpAddr::V4(v4));
            }
            v6_reason(v6)?
        }
    };
    Some((Class::NonPublic, reason))
}

/// `a.b.c.d/prefix` (checked at compile time).
const fn net4(octets: [u8; 4], prefix: u8) -> Ipv4Net {
    let [a, b, c, d] = octets;
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

/// An IPv6 network from its eight segments and prefix (checked at compile time).
const fn net6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// Non-public IPv4 ranges, most specific reason first.
const V4_RANGES: &[(Ipv4Net, &str)] = &[
    (net4([0, 0, 0, 0], 32), "unspecified"),
    (net4([255, 255, 255, 255], 32), "broadcast"),
    (net4([0, 0, 0, 0], 8), "in 'this network' 0.0.0.0/8"),
    (net4([127, 0, 0, 0], 8), "loopback"),
    (net4([10, 0, 0, 0], 8), "private (RFC 1918)"),
    (net4([172, 16, 0, 0], 12), "private (RFC 1918)"),
    (net4([192, 168, 0, 0], 16), "private (RFC 1918)"),
    (net4([169, 254, 0, 0], 16), "link-local"),
    (net4([100, 64, 0, 0], 10), "carrier-grade NAT (RFC 6598)"),
    (
        net4([192, 0, 0, 0], 24),
        "reserved for IETF protocol assignments",
    ),
    (net4([192, 0, 2, 0], 24), "documentation (TEST-NET-1)"),
    (net4([198, 51, 100, 0], 24), "documentation (TEST-NET-2)"),
    (net4([203, 0, 113, 0], 24), "documentation (TEST-NET-3)"),
    (net4([192, 88, 99, 0], 24), "reserved (6to4 relay anycast)"),
    (net4([198, 18, 0, 0], 15), "reserved for benchmarking"),
    (net4([224, 0, 0, 0], 4), "multicast"),
    (net4([240, 0, 0, 0], 4), "reserved (240.0.0.0/4)"),
];

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    V4_RANGES
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, reason)| *reason)
}

/// IPv4-mapped `::ffff:0:0/96`.
const V4_MAPPED: Ipv6Net = net6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
/// IPv4-translated `::ffff:0:0:0/96`.
const V4_TRANSLATED: Ipv6Net = net6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96);
/// NAT64 well-known prefix `64:ff9b::/96`.
const NAT64: Ipv6Net = net6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
/// IPv4-compatible `::/96` (deprecated).
const V4_COMPATIBLE: Ipv6Net = net6([0; 8], 96);
/// 6to4 `2002::/16`.
const SIX_TO_FOUR: Ipv6Net = net6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);
/// Global unicast `2000::/3`.
const GLOBAL_UNICAST: Ipv6Net = net6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// IPv4 address carried inside an IPv6 address whose destination is effectively that
/// IPv4 address: IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d` (deprecated), NAT64 `64:ff9b::/96` and 6to4 `2002::/16`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    let s = ip.segments();
    if V4_MAPPED.contains(&ip) || V4_TRANSLATED.contains(&ip) || NAT64.contains(&ip) {
        return Some(low32);
    }
    // IPv4-compatible, but not :: and ::1 themselves.
    if V4_COMPATIBLE.contains(&ip) && bits > 1 {
        return Some(low32);
    }
    if SIX_TO_FOUR.contains(&ip) {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Non-public IPv6 ranges (besides those embedding an IPv4 address), most specific first.
const V6_RANGES: &[(Ipv6Net, &str)] = &[
    (net6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (net6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (net6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
    (net6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (
        net6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (deprecated)",
    ),
    (
        net6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique-local (private)",
    ),
    (
        net6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64",
    ),
    (net6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (net6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16), "reserved for SRv6"),
    (net6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (net6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (
        net6([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48),
        "reserved for benchmarking",
    ),
    (net6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "Teredo tunnelling"),
    (
        net6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28),
        "reserved (ORCHID)",
    ),
    (
        net6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
        "reserved (ORCHIDv2)",
    ),
];

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some((_, reason)) = V6_RANGES.iter().find(|(net, _)| net.contains(&ip)) {
        return Some(reason);
    }
    // Everything outside global unicast 2000::/3 is reserved.
    if !GLOBAL_UNICAST.contains(&ip) {
        return Some("reserved (outside global unicast 2000::/3)");
    }
    None
}

impl CallbackPolicy {
    /// Is a destination of this class refused under this policy?
    fn refuses(&self, class: Class) -> bool {
        class == Class::Metadata || !self.allow_private
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), CallbackRefusal> {
        match classify_ip(ip) {
            Some((class, reason)) if self.refuses(class) => {
                Err(CallbackRefusal::ForbiddenAddress { addr: ip, reason })
            }
            _ => Ok(()),
        }
    }

    /// Checks a host name (not an IP literal) against name rules and the allowlist.
    fn check_domain(&self, host: &str) -> Result<(), CallbackRefusal> {
        if let Some((class, reason)) = classify_name(host) {
            if self.refuses(class) {
                return Err(CallbackRefusal::ForbiddenHost {
                    host: host.to_string(),
                    reason,
                });
            }
        }
        if !self.allowed_hosts.is_empty()
            && !self.allowed_hosts.iter().any(|p| p.matches_domain(host))
        {
            return Err(CallbackRefusal::HostNotAllowed(host.to_string()));
        }
        Ok(())
    }

    /// Syntactic checks on a callback URL; an IP-literal host is checked here too.
    pub fn check_url(&self, url: &str) -> Result<Url, CallbackRefusal> {
        let parsed =
            Url::parse(url.trim()).map_err(|e| CallbackRefusal::InvalidUrl(e.to_string()))?;
        self.check_parsed(&parsed)?;
        Ok(parsed)
    }

    fn check_parsed(&self, url: &Url) -> Result<(), CallbackRefusal> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            "http" => return Err(CallbackRefusal::HttpsRequired),
            other => return Err(CallbackRefusal::Scheme(other.to_string())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CallbackRefusal::Credentials);
        }
        match url.host() {
            None => Err(CallbackRefusal::MissingHost),
            Some(Host::Domain("")) => Err(CallbackRefusal::MissingHost),
            Some(Host::Domain(d)) => self.check_domain(d),
            Some(Host::Ipv4(v4)) => self.check_ip_host(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_ip_host(IpAddr::V6(v6)),
        }
    }

    fn check_ip_host(&self, ip: IpAddr) -> Result<(), CallbackRefusal> {
        if !self.allowed_hosts.is_empty() && !self.allowed_hosts.iter().any(|p| p.matches_ip(ip)) {
            return Err(CallbackRefusal::HostNotAllowed(ip_host_text(ip)));
        }
        self.check_ip(ip)
    }

    /// Runs [`check_url`](Self::check_url)'s checks, resolves the host and refuses the URL
    /// if **any** resolved address is forbidden. Returns the addresses (with the URL's port).
    pub async fn check_resolved(&self, url: &Url) -> Result<Vec<SocketAddr>, CallbackRefusal> {
        self.check_parsed(url)?;
        let port = url.port_or_known_default().unwrap_or(443);
        let host = match url.host() {
            Some(Host::Ipv4(v4)) => return Ok(vec![SocketAddr::new(IpAddr::V4(v4), port)]),
            Some(Host::Ipv6(v6)) => return Ok(vec![SocketAddr::new(IpAddr::V6(v6), port)]),
            Some(Host::Domain(d)) => d,
            None => return Err(CallbackRefusal::MissingHost),
        };
        let addrs = resolve(host, port).await?;
        for addr in &addrs {
            self.check_ip(addr.ip())?;
        }
        Ok(addrs)
    }
}

fn ip_host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, CallbackRefusal> {
    let unresolvable = || CallbackRefusal::Unresolvable(host.to_string());
    let found = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolvable())?
        .map_err(|_| unresolvable())?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(unresolvable());
    }
    Ok(addrs)
}

/// DNS resolver for reqwest that applies a [`CallbackPolicy`]: host names refused by
/// name or by the allowlist fail, forbidden addresses are dropped, and the lookup fails
/// if no address is left. The connector then connects only to the returned addresses.
#[derive(Clone, Debug)]
pub struct PolicyResolver {
    policy: Arc<CallbackPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: CallbackPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_string();
        Box::pin(async move {
            policy.check_domain(&host)?;
            // Port 0: reqwest substitutes the URL's port.
            let addrs = resolve(&host, 0).await?;
            let allowed = policy.filter_addrs(&host, addrs)?;
            let iter: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(iter)
        })
    }
}

impl CallbackPolicy {
    /// Keeps the allowed addresses; fails with the first refusal if none is left.
    fn filter_addrs(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, CallbackRefusal> {
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(addrs.len());
        for addr in addrs {
            match self.check_ip(addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        if allowed.is_empty() {
            return Err(first_refusal.unwrap_or_else(|| CallbackRefusal::Unresolvable(host.into())));
        }
        Ok(allowed)
    }
}

/// HTTP client for deliveries: the policy is enforced in its DNS resolver, no redirects
/// are followed, no proxy is used, `timeout` is the total deadline per request (connect,
/// headers and body), and plain http is refused unless `allow_private`.
///
/// IP-literal URLs do not go through the resolver: call [`CallbackPolicy::check_url`]
/// before each attempt.
pub fn build_client(policy: CallbackPolicy, timeout: Duration) -> reqwest::Client {
    let https_only = !policy.allow_private;
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .no_proxy()
        .https_only(https_only)
        .user_agent(USER_AGENT)
        .dns_resolver(PolicyResolver::new(policy))
        .build()
        .expect("the webhook HTTP client configuration is valid and the TLS backend initialises")
}

/// Reads at most `cap` bytes of the response body, chunk by chunk, and stops there.
/// A read error (including the client's deadline) ends the read with what arrived so
/// far. Bytes are decoded as lossy UTF-8; a multi-byte character cut by the cap is
/// dropped rather than replaced.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> String {
    let mut buf: Vec<u8> = Vec::with_capacity(cap.min(64 * 1024));
    while buf.len() < cap {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(cap - buf.len());
                buf.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    if let Err(e) = std::str::from_utf8(&buf) {
        if e.error_len().is_none() {
            buf.truncate(e.valid_up_to());
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn strict() -> CallbackPolicy {
        CallbackPolicy::default()
    }

    fn dev() -> CallbackPolicy {
        CallbackPolicy {
            allow_private: true,
            allowed_hosts: vec![],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbidden_ipv4_ranges() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "'this network'"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "RFC 1918"),
            ("10.255.255.255", "RFC 1918"),
            ("172.16.0.1", "RFC 1918"),
            ("172.31.255.255", "RFC 1918"),
            ("192.168.1.1", "RFC 1918"),
            ("169.254.0.1", "link-local"),
            ("169.254.169.254", "metadata"),
            ("169.254.170.2", "metadata"),
            ("168.63.129.16", "metadata"),
            ("100.100.100.200", "metadata"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("192.0.0.8", "IETF"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("192.88.99.1", "6to4"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("254.1.2.3", "reserved"),
            ("255.255.255.255", "broadcast"),
        ];
        for (addr, want) in cases {
            let reason = forbidden_reason(ip(addr)).unwrap_or_else(|| panic!("{addr} allowed"));
            assert!(reason.contains(want), "{addr}: {reason:?} lacks {want:?}");
        }
    }

    #[test]
    fn public_ipv4_edges_are_allowed() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "168.63.129.17",
            "20.42.1.1",
        ] {
            assert_eq!(forbidden_reason(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn forbidden_ipv6_ranges() {
        let cases = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("fec0::1", "site-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fd00:ec2::254", "metadata"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff:0fff::1", "documentation"),
            ("100::1", "discard"),
            ("5f00::1", "SRv6"),
            ("64:ff9b:1::1", "NAT64"),
            ("2001:2::1", "benchmarking"),
            ("2001:0:4136:e378::1", "Teredo"),
            ("2001:10::1", "ORCHID"),
            ("4000::1", "reserved"),
            ("1234::1", "reserved"),
        ];
        for (addr, want) in cases {
            let reason = forbidden_reason(ip(addr)).unwrap_or_else(|| panic!("{addr} allowed"));
            assert!(reason.contains(want), "{addr}: {reason:?} lacks {want:?}");
        }
    }

    #[test]
    fn ipv6_embedding_v4_checks_the_v4() {
        let cases = [
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:7f00:1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("RFC 1918")),
            ("::ffff:169.254.169.254", Some("metadata")),
            ("::ffff:0:192.168.0.1", Some("RFC 1918")),
            ("::127.0.0.1", Some("loopback")),
            ("::10.0.0.1", Some("RFC 1918")),
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("metadata")),
            ("64:ff9b::192.168.0.1", Some("RFC 1918")),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:a00:1::1", Some("RFC 1918")),
            ("2002:a9fe:a9fe::", Some("metadata")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::8.8.8.8", None),
            ("2002:808:808::1", None),
        ];
        for (addr, want) in cases {
            let got = forbidden_reason(ip(addr));
            match want {
                None => assert_eq!(got, None, "{addr}"),
                Some(w) => assert!(got.is_some_and(|r| r.contains(w)), "{addr}: {got:?}"),
            }
        }
    }

    #[test]
    fn public_ipv6_is_allowed() {
        for addr in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a01:111:f100::1",
        ] {
            assert_eq!(forbidden_reason(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn check_url_refuses_forbidden_literals() {
        let p = strict();
        for url in [
            "https://[::1]/",
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://127.0.0.1:9/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fe80::1]/",
            "https://0x7f000001/",
            "https://2130706433/",
            "https://0/",
        ] {
            match p.check_url(url) {
                Err(CallbackRefusal::ForbiddenAddress { .. }) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
        // With http the scheme rule speaks first under the strict policy.
        assert!(matches!(
            p.check_url("http://169.254.169.254/latest/meta-data"),
            Err(CallbackRefusal::HttpsRequired)
        ));
        let msg = p.check_url("https://10.0.0.1/").unwrap_err().to_string();
        assert_eq!(msg, "address 10.0.0.1 is private (RFC 1918) (not allowed)");
    }

    #[test]
    fn check_url_dev_policy_refuses_private_only_for_metadata() {
        let p = dev();
        for url in ["http://[::1]/", "http://10.0.0.1/", "http://127.0.0.1:9/x"] {
            assert!(p.check_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:169.254.169.254]/",
            "http://metadata.google.internal/computeMetadata/v1/",
        ] {
            assert!(p.check_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn check_url_syntax_rules() {
        let p = strict();
        let ok = p
            .check_url("https://prod-12.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers&sig=x")
            .unwrap();
        assert_eq!(ok.host_str(), Some("prod-12.westus.logic.azure.com"));
        assert!(matches!(
            p.check_url("http://example.com/"),
            Err(CallbackRefusal::HttpsRequired)
        ));
        assert!(
            matches!(p.check_url("ftp://example.com/"), Err(CallbackRefusal::Scheme(s)) if s == "ftp")
        );
        assert!(matches!(
            p.check_url("file:///etc/passwd"),
            Err(CallbackRefusal::Scheme(_))
        ));
        assert!(matches!(
            p.check_url("gopher://x/"),
            Err(CallbackRefusal::Scheme(_))
        ));
        assert!(matches!(
            p.check_url("https://user:pw@example.com/"),
            Err(CallbackRefusal::Credentials)
        ));
        assert!(matches!(
            p.check_url("https://user@example.com/"),
            Err(CallbackRefusal::Credentials)
        ));
        assert!(matches!(
            p.check_url("https://:pw@example.com/"),
            Err(CallbackRefusal::Credentials)
        ));
        assert!(matches!(
            p.check_url("not a url"),
            Err(CallbackRefusal::InvalidUrl(_))
        ));
        assert!(matches!(
            p.check_url("https://"),
            Err(CallbackRefusal::InvalidUrl(_))
        ));
        assert!(matches!(
            p.check_url("https://exa mple.com/"),
            Err(CallbackRefusal::InvalidUrl(_))
        ));
        assert!(matches!(
            p.check_url("https://metadata.google.internal./"),
            Err(CallbackRefusal::ForbiddenHost { .. })
        ));
        assert!(matches!(
            p.check_url("https://LOCALHOST:8080/"),
            Err(CallbackRefusal::ForbiddenHost {
                reason: "loopback",
                ..
            })
        ));
        assert!(matches!(
            p.check_url("https://api.localhost/"),
            Err(CallbackRefusal::ForbiddenHost { .. })
        ));
        let scheme_msg = p.check_url("ftp://example.com/").unwrap_err().to_string();
        assert!(
            scheme_msg.contains("'ftp'") && scheme_msg.contains("http"),
            "{scheme_msg}"
        );
    }

    #[test]
    fn dev_policy_allows_http_and_loopback() {
        let p = dev();
        assert!(p.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(p.check_url("http://localhost:8080/hook").is_ok());
        assert!(p.check_url("https://example.com/").is_ok());
        assert!(matches!(
            p.check_url("ftp://example.com/"),
            Err(CallbackRefusal::Scheme(_))
        ));
        assert!(matches!(
            p.check_url("http://u:p@127.0.0.1/"),
            Err(CallbackRefusal::Credentials)
        ));
    }

    #[test]
    fn host_patterns_parse_and_match() {
        let wild: HostPattern = "*.logic.azure.com".parse().unwrap();
        let exact: HostPattern = "Prod-12.WestUS.logic.azure.com.".parse().unwrap();
        assert_eq!(exact.to_string(), "prod-12.westus.logic.azure.com");
        assert_eq!(wild.to_string(), "*.logic.azure.com");

        assert!(wild.matches_domain("prod-12.westus.logic.azure.com"));
        assert!(wild.matches_domain("westus.logic.azure.com"));
        assert!(wild.matches_domain("WESTUS.LOGIC.AZURE.COM"));
        assert!(wild.matches_domain("westus.logic.azure.com."));
        assert!(!wild.matches_domain("logic.azure.com"));
        assert!(!wild.matches_domain("evillogic.azure.com"));
        assert!(!wild.matches_domain("logic.azure.com.evil.com"));
        assert!(!wild.matches_domain(".logic.azure.com"));
        assert!(!wild.matches_domain("a..logic.azure.com"));

        assert!(exact.matches_domain("prod-12.westus.logic.azure.com"));
        assert!(!exact.matches_domain("prod-13.westus.logic.azure.com"));
        assert!(!exact.matches_domain("x.prod-12.westus.logic.azure.com"));

        let v6: HostPattern = "[2606:4700::1]".parse().unwrap();
        assert!(v6.matches_ip(ip("2606:4700::1")));
        let v6b: HostPattern = "2606:4700::1".parse().unwrap();
        assert_eq!(v6, v6b);
        let idn: HostPattern = "*.BÜCHER.de".parse().unwrap();
        assert!(idn.matches_domain("shop.xn--bcher-kva.de"));

        for bad in [
            "",
            "  ",
            "*",
            "*.",
            "a.*.com",
            "*.*.com",
            "foo*.com",
            "exa mple.com",
            "*.a..b",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn allowlist_is_enforced_by_check_url() {
        let p = CallbackPolicy {
            allow_private: false,
            allowed_hosts: vec![
                "*.logic.azure.com".parse().unwrap(),
                "hooks.example.com".parse().unwrap(),
                "203.0.113.50".parse().unwrap(),
            ],
        };
        assert!(p
            .check_url("https://prod-12.westus.logic.azure.com/workflows")
            .is_ok());
        assert!(p.check_url("https://HOOKS.example.com/x").is_ok());
        let refused = p.check_url("https://logic.azure.com/").unwrap_err();
        assert!(matches!(&refused, CallbackRefusal::HostNotAllowed(h) if h == "logic.azure.com"));
        assert_eq!(
            refused.to_string(),
            "host 'logic.azure.com' is not in the callback host allowlist"
        );
        assert!(matches!(
            p.check_url("https://example.com/"),
            Err(CallbackRefusal::HostNotAllowed(_))
        ));
        assert!(matches!(
            p.check_url("https://8.8.8.8/"),
            Err(CallbackRefusal::HostNotAllowed(_))
        ));
        // Listed, but a documentation address: the address rule still applies.
        assert!(matches!(
            p.check_url("https://203.0.113.50/"),
            Err(CallbackRefusal::ForbiddenAddress { .. })
        ));
    }

    #[tokio::test]
    async fn check_resolved_refuses_localhost_and_allows_it_in_dev() {
        let url = Url::parse("https://localhost:8080/").unwrap();
        let err = strict().check_resolved(&url).await.unwrap_err();
        assert!(
            matches!(err, CallbackRefusal::ForbiddenHost { .. }),
            "{err:?}"
        );

        // Same resolution path without the name rule: the resolved address is refused.
        let resolved_err = resolve_and_check(&strict(), "localhost", 8080)
            .await
            .unwrap_err();
        assert!(
            matches!(
                resolved_err,
                CallbackRefusal::ForbiddenAddress {
                    reason: "loopback",
                    ..
                }
            ),
            "{resolved_err:?}"
        );

        let url = Url::parse("http://localhost:8080/").unwrap();
        let addrs = dev().check_resolved(&url).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs
            .iter()
            .all(|a| a.port() == 8080 && a.ip().is_loopback()));
    }

    async fn resolve_and_check(
        p: &CallbackPolicy,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, CallbackRefusal> {
        let addrs = resolve(host, port).await?;
        for a in &addrs {
            p.check_ip(a.ip())?;
        }
        Ok(addrs)
    }

    #[tokio::test]
    async fn check_resolved_handles_literals_and_bad_names() {
        let p = strict();
        let url = Url::parse("https://10.0.0.1/").unwrap();
        assert!(matches!(
            p.check_resolved(&url).await,
            Err(CallbackRefusal::ForbiddenAddress { .. })
        ));
        let url = Url::parse("https://8.8.8.8/").unwrap();
        assert_eq!(
            p.check_resolved(&url).await.unwrap(),
            vec!["8.8.8.8:443".parse::<SocketAddr>().unwrap()]
        );
        // `.invalid` never resolves (RFC 6761).
        let url = Url::parse("https://no-such-host.invalid/").unwrap();
        let err = p.check_resolved(&url).await.unwrap_err();
        assert!(matches!(err, CallbackRefusal::Unresolvable(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "could not resolve host 'no-such-host.invalid'"
        );
        let url = Url::parse("http://example.com/").unwrap();
        assert!(matches!(
            p.check_resolved(&url).await,
            Err(CallbackRefusal::HttpsRequired)
        ));
    }

    /// Accepts connections on 127.0.0.1 and counts them; each connection gets `reply`.
    async fn counting_server(reply: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = reply.clone();
                tokio::spawn(async move {
                    read_request_head(&mut sock).await;
                    let _ = sock.write_all(&reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        (port, hits)
    }

    async fn read_request_head(sock: &mut tokio::net::TcpStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    }

    const OK_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (target_port, target_hits) = counting_server(OK_REPLY.to_vec()).await;
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{target_port}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (port, hits) = counting_server(redirect.into_bytes()).await;
        let client = build_client(dev(), Duration::from_secs(5));
        let resp = client
            .post(format!("http://127.0.0.1:{port}/hook"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 302);
        assert_eq!(
            resp.headers()["location"].to_str().unwrap(),
            format!("http://127.0.0.1:{target_port}/")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(target_hits.load(Ordering::SeqCst), 0);
    }

    fn find_refusal<'a>(
        mut err: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a CallbackRefusal> {
        loop {
            if let Some(r) = err.downcast_ref::<CallbackRefusal>() {
                return Some(r);
            }
            err = err.source()?;
        }
    }

    #[tokio::test]
    async fn client_resolver_refuses_localhost_at_connect_time() {
        let (port, hits) = counting_server(OK_REPLY.to_vec()).await;
        // https_only would refuse http before DNS, so this client allows http but applies
        // the strict address rules in its resolver.
        let strict_resolver = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .dns_resolver(PolicyResolver::new(strict()))
            .build()
            .unwrap();
        let err = strict_resolver
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        let refusal = find_refusal(&err).unwrap_or_else(|| panic!("no refusal in {err:?}"));
        assert!(
            matches!(refusal, CallbackRefusal::ForbiddenHost { .. }),
            "{refusal:?}"
        );

        // The production client (strict policy): http is refused outright, and https
        // reaches the resolver, which refuses the name before any connection.
        let prod = build_client(strict(), Duration::from_secs(5));
        assert!(prod
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .is_err());
        let err = prod
            .get(format!("https://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        let refusal = find_refusal(&err).unwrap_or_else(|| panic!("no refusal in {err:?}"));
        assert!(
            matches!(refusal, CallbackRefusal::ForbiddenHost { .. }),
            "{refusal:?}"
        );

        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 0, "listener saw a connection");

        // Positive control: the listener works and the dev client reaches it.
        let dev_client = build_client(dev(), Duration::from_secs(5));
        let resp = dev_client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn resolver_filters_forbidden_addresses() {
        use reqwest::dns::Resolve;
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        // Mixed answers: forbidden addresses are dropped, the public one kept.
        let mixed = vec![sa("10.0.0.1:0"), sa("93.184.215.14:0"), sa("[::1]:0")];
        assert_eq!(
            strict().filter_addrs("h", mixed.clone()).unwrap(),
            vec![sa("93.184.215.14:0")]
        );
        assert_eq!(dev().filter_addrs("h", mixed).unwrap().len(), 3);
        // All forbidden: the first refusal is reported.
        let err = strict()
            .filter_addrs("h", vec![sa("127.0.0.1:0"), sa("[fd00::1]:0")])
            .unwrap_err();
        assert!(
            matches!(
                err,
                CallbackRefusal::ForbiddenAddress {
                    reason: "loopback",
                    ..
                }
            ),
            "{err:?}"
        );
        // Metadata stays refused under the dev policy.
        assert!(dev()
            .filter_addrs("h", vec![sa("169.254.169.254:0")])
            .is_err());
        // Through the resolver: localhost is refused by name under the strict policy.
        let err = match PolicyResolver::new(strict())
            .resolve(name("localhost"))
            .await
        {
            Ok(_) => panic!("localhost resolved under the strict policy"),
            Err(e) => e,
        };
        assert!(err.downcast_ref::<CallbackRefusal>().is_some(), "{err:?}");
        // Allowlist is applied to the name before any lookup.
        let listed = CallbackPolicy {
            allow_private: true,
            allowed_hosts: vec!["*.example.com".parse().unwrap()],
        };
        let err = match PolicyResolver::new(listed.clone())
            .resolve(name("localhost"))
            .await
        {
            Ok(_) => panic!("unlisted host resolved"),
            Err(e) => e,
        };
        assert!(
            matches!(
                err.downcast_ref::<CallbackRefusal>(),
                Some(CallbackRefusal::HostNotAllowed(_))
            ),
            "{err:?}"
        );
        // Dev policy resolves localhost.
        let addrs: Vec<SocketAddr> = PolicyResolver::new(dev())
            .resolve(name("localhost"))
            .await
            .map_err(|e| e.to_string())
            .unwrap()
            .collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn production_client_refuses_plain_http() {
        let (port, hits) = counting_server(OK_REPLY.to_vec()).await;
        let client = build_client(strict(), Duration::from_secs(5));
        assert!(client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn client_sends_user_agent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0);
                head.extend_from_slice(&buf[..n]);
            }
            sock.write_all(OK_REPLY).await.unwrap();
            String::from_utf8_lossy(&head).to_ascii_lowercase()
        });
        let client = build_client(dev(), Duration::from_secs(5));
        let resp = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(read_capped(resp, 100).await, "ok");
        let head = server.await.unwrap();
        assert!(
            head.contains("user-agent: insights-connector-webhooks/1"),
            "{head}"
        );
    }

    /// Sends headers announcing a huge body, then streams it forever (until the peer
    /// goes away). Returns the port and a counter of body bytes written.
    async fn endless_body_server() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let written = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&written);
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_request_head(&mut sock).await;
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n";
            if sock.write_all(head).await.is_err() {
                return;
            }
            let chunk = vec![b'a'; 16 * 1024];
            while sock.write_all(&chunk).await.is_ok() {
                counter.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        });
        (port, written)
    }

    #[tokio::test]
    async fn read_capped_stops_at_the_cap() {
        let (port, written) = endless_body_server().await;
        let client = build_client(dev(), Duration::from_secs(30));
        let resp = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        let body = tokio::time::timeout(Duration::from_secs(5), read_capped(resp, 20_000))
            .await
            .expect("read_capped did not stop at the cap");
        assert_eq!(body.len(), 20_000);
        assert!(body.bytes().all(|b| b == b'a'));
        // The response was dropped, so the server stops soon after; far less than the
        // announced terabyte was ever sent.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(written.load(Ordering::SeqCst) < 64 * 1024 * 1024);
    }

    #[tokio::test]
    async fn read_capped_small_bodies_and_utf8_cut() {
        // "é" is two bytes; a cap of 4 cuts the second "é" in half.
        let reply =
            "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\naébé".as_bytes();
        let (port, _) = counting_server(reply.to_vec()).await;
        let client = build_client(dev(), Duration::from_secs(5));
        let url = format!("http://127.0.0.1:{port}/");
        let full = read_capped(client.get(&url).send().await.unwrap(), 1000).await;
        assert_eq!(full, "aébé");
        let cut = read_capped(client.get(&url).send().await.unwrap(), 4).await;
        assert_eq!(cut, "aéb");
        let cut = read_capped(client.get(&url).send().await.unwrap(), 5).await;
        assert_eq!(cut, "aéb");
        let none = read_capped(client.get(&url).send().await.unwrap(), 0).await;
        assert_eq!(none, "");
    }

    #[tokio::test]
    async fn total_timeout_covers_a_stalled_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_request_head(&mut sock).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                .await;
            let _ = released.await; // stall until the test ends
        });
        let client = build_client(dev(), Duration::from_millis(400));
        let started = std::time::Instant::now();
        let resp = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        let body = tokio::time::timeout(Duration::from_secs(5), read_capped(resp, 20_000))
            .await
            .expect("deadline did not cover the body");
        assert_eq!(body, "partial");
        assert!(started.elapsed() < Duration::from_secs(3));
        let _ = release.send(());
    }
}
