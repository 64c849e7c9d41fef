//! Where Bedrock runtime calls go: scheme, host, port and signing region.
//!
//! Contract: `docs/bedrock-contract.md#endpoints` (host names, PrivateLink), `#sigv4` (sign over
//! the Host that is actually sent) and `#service` (`bedrock-runtime` endpoint prefix).
//!
//! * No override: `https://bedrock-runtime.<region>.amazonaws.com`.
//! * Override (`AWS_BEDROCK_RUNTIME_ENDPOINT`): exactly `http(s)://host[:port]` with an optional
//!   trailing `/`; no path, query, fragment or userinfo.
//! * Region: the configured one, else taken from a `bedrock-runtime[-fips].<region>.`
//!   `{amazonaws.com | vpce.amazonaws.com | api.aws}` host (the same rule as envoyproxy/ai-gateway's
//!   `AWSBedrockRegionFromHost` regex, written by hand).
//!
//! [`Endpoint::authority`] is the one value used both as `:authority`/`Host` on the wire and as
//! the signed `host` header, so the two can never disagree (VPC endpoints, local test ports).
//!
//! The Agents for Amazon Bedrock Runtime (knowledge base `Retrieve`, docs/bedrock-contract.md#retrieve)
//! resolves the same way with [`Endpoint::resolve_agent_runtime`]: default
//! `https://bedrock-agent-runtime.<region>.amazonaws.com`, override
//! `AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT` (same `http(s)://host[:port]` rules), region: the configured
//! one, else the runtime endpoint's (an agent runtime VPC endpoint lives in the same region).

/// URL scheme of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `"http"` or `"https"` (the value of `:scheme`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A resolved Bedrock runtime endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Lower-case DNS name, IPv4 address, or bracketed IPv6 address (`[::1]`).
    pub host: String,
    /// The port as written in the override, if any (may equal the scheme default).
    pub port: Option<u16>,
    /// SigV4 signing region.
    pub region: String,
}

const ENV_NAME: &str = "AWS_BEDROCK_RUNTIME_ENDPOINT";
const AGENT_ENV_NAME: &str = "AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT";

impl Endpoint {
    /// Resolves the endpoint from the optional override URL and the optional configured region.
    pub fn resolve(endpoint_url: Option<&str>, region: Option<&str>) -> Result<Endpoint, String> {
        let region = match region.map(str::trim) {
            Some("") | None => None,
            Some(r) => {
                validate_region(r)?;
                Some(r.to_string())
            }
        };
        let url = endpoint_url.map(str::trim).filter(|u| !u.is_empty());
        let Some(url) = url else {
            let Some(region) = region else {
                return Err(
                    "no AWS region configured: set a region (e.g. AWS_REGION) or an \
                     AWS_BEDROCK_RUNTIME_ENDPOINT whose host names the region"
                        .to_string(),
                );
            };
            return Ok(Endpoint {
                scheme: Scheme::Https,
                host: format!("bedrock-runtime.{region}.amazonaws.com"),
                port: None,
                region,
            });
        };
        let (scheme, host, port) = parse_override(ENV_NAME, url)?;
        let region = match region {
            Some(r) => r,
            None => region_from_host(&host).ok_or_else(|| {
                format!(
                    "no AWS region configured and none can be derived from the {ENV_NAME} host \
                     '{host}' (expected bedrock-runtime[-fips].<region>.amazonaws.com, \
                     .vpce.amazonaws.com or .api.aws); set the region explicitly"
                )
            })?,
        };
        Ok(Endpoint {
            scheme,
            host,
            port,
            region,
        })
    }

    /// The Agents for Amazon Bedrock Runtime endpoint (knowledge base `Retrieve`): the optional
    /// `AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT` override (default
    /// `bedrock-agent-runtime.<region>.amazonaws.com`), signed for `configured_region`
    /// (`AWS_REGION_NAME`, when set) or else `runtime_region`, the region the runtime endpoint
    /// resolved to.
    pub fn resolve_agent_runtime(
        endpoint_url: Option<&str>,
        configured_region: Option<&str>,
        runtime_region: &str,
    ) -> Result<Endpoint, String> {
        let configured = match configured_region.map(str::trim) {
            Some("") | None => None,
            Some(r) => {
                validate_region(r)?;
                Some(r.to_string())
            }
        };
        validate_region(runtime_region)?;
        let url = endpoint_url.map(str::trim).filter(|u| !u.is_empty());
        let Some(url) = url else {
            let region = configured.unwrap_or_else(|| runtime_region.to_string());
            return Ok(Endpoint {
                scheme: Scheme::Https,
                host: format!("bedrock-agent-runtime.{region}.amazonaws.com"),
                port: None,
                region,
            });
        };
        let (scheme, host, port) = parse_override(AGENT_ENV_NAME, url)?;
        let region = configured.unwrap_or_else(|| runtime_region.to_string());
        Ok(Endpoint {
            scheme,
            host,
            port,
            region,
        })
    }

    /// `host`, plus `:port` when the port is not the scheme default. Sent as `:authority` and
    /// signed as `host`.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) if p != self.scheme.default_port() => format!("{}:{p}", self.host),
            _ => self.host.clone(),
        }
    }

    /// The TCP port to connect to.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }
}

fn validate_region(region: &str) -> Result<(), String> {
    if is_region(region) {
        Ok(())
    } else {
        Err(format!(
            "invalid AWS region '{}': only a-z, 0-9 and '-' are allowed",
            region.escape_default()
        ))
    }
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn bad_override(name: &str, url: &str, why: &str) -> String {
    format!(
        "invalid {name} '{}': {why}; expected http(s)://host[:port]",
        url.escape_default()
    )
}

/// Parses `http(s)://host[:port][/]`; errors name the variable `name`.
fn parse_override(name: &str, url: &str) -> Result<(Scheme, String, Option<u16>), String> {
    let lower_prefix = |p: &str| {
        url.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    };
    let (scheme, rest) = if lower_prefix("https://") {
        (Scheme::Https, url.get("https://".len()..).unwrap_or(""))
    } else if lower_prefix("http://") {
        (Scheme::Http, url.get("http://".len()..).unwrap_or(""))
    } else {
        return Err(bad_override(
            name,
            url,
            "the scheme must be http:// or https://",
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(bad_override(name, url, "the host is missing"));
    }
    if let Some(c) = rest
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control())
    {
        let why = match c {
            '/' | '\\' => "a path is not allowed",
            '?' => "a query is not allowed",
            '#' => "a fragment is not allowed",
            '@' => "userinfo is not allowed",
            _ => "whitespace or control characters are not allowed",
        };
        return Err(bad_override(name, url, why));
    }
    let (host, port) = if let Some(after_bracket) = rest.strip_prefix('[') {
        // [IPv6]:port
        let Some(close) = after_bracket.find(']') else {
            return Err(bad_override(name, url, "unterminated IPv6 address"));
        };
        let inner = after_bracket.get(..close).unwrap_or("");
        let tail = after_bracket.get(close + 1..).unwrap_or("");
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(bad_override(name, url, "invalid IPv6 address"));
        }
        let port = match tail {
            "" => None,
            t => match t.strip_prefix(':') {
                Some(p) => Some(parse_port(name, url, p)?),
                None => return Err(bad_override(name, url, "junk after the IPv6 address")),
            },
        };
        (format!("[{}]", inner.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(parse_port(name, url, p)?)),
            None => (rest, None),
        };
        if !is_hostname(host) {
            return Err(bad_override(
                name,
                url,
                "the host may only contain letters, digits, '-' and '.'",
            ));
        }
        (host.to_ascii_lowercase(), port)
    };
    Ok((scheme, host, port))
}

fn parse_port(name: &str, url: &str, p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_override(
            name,
            url,
            "the port must be a number from 1 to 65535",
        ));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad_override(
            name,
            url,
            "the port must be a number from 1 to 65535",
        )),
        Ok(n) => Ok(n),
    }
}

fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && !h.starts_with('.')
        && !h.contains("..")
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Hand-written equivalent of
/// `(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.(?:vpce\.amazonaws\.com|amazonaws\.com|api\.aws)$`.
pub fn region_from_host(host: &str) -> Option<String> {
    const SUFFIXES: [&str; 3] = [".vpce.amazonaws.com", ".amazonaws.com", ".api.aws"];
    SUFFIXES.iter().find_map(|suffix| {
        let head = host.strip_suffix(suffix)?;
        let (prefix, region) = head.rsplit_once('.')?;
        if !is_region(region) {
            return None;
        }
        let service_ok = ["bedrock-runtime", "bedrock-runtime-fips"].iter().any(|s| {
            prefix == *s
                || prefix
                    .strip_suffix(s)
                    .is_some_and(|before| before.ends_with('.'))
        });
        service_ok.then(|| region.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: Option<&str>, region: Option<&str>) -> Endpoint {
        Endpoint::resolve(url, region).unwrap_or_else(|e| panic!("{url:?} {region:?}: {e}"))
    }

    fn err(url: Option<&str>, region: Option<&str>) -> String {
        match Endpoint::resolve(url, region) {
            Ok(e) => panic!("{url:?} {region:?} unexpectedly ok: {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn default_public_endpoint() {
        let e = ok(None, Some("ap-northeast-1"));
        assert_eq!(e.scheme, Scheme::Https);
        assert_eq!(e.host, "bedrock-runtime.ap-northeast-1.amazonaws.com");
        assert_eq!(e.port, None);
        assert_eq!(e.region, "ap-northeast-1");
        assert_eq!(
            e.authority(),
            "bedrock-runtime.ap-northeast-1.amazonaws.com"
        );
        assert_eq!(e.port_or_default(), 443);
        // Empty override means no override.
        assert_eq!(ok(Some("  "), Some("ap-northeast-1")), e);
    }

    #[test]
    fn region_required_without_override() {
        assert!(err(None, None).contains("region"));
        assert!(err(None, Some("")).contains("region"));
        assert!(err(None, Some("US-EAST-1")).contains("invalid AWS region"));
        assert!(err(None, Some("us_east_1")).contains("invalid AWS region"));
        assert!(err(None, Some("us-east-1.evil.com")).contains("invalid AWS region"));
        assert!(err(None, Some("us-east-1/x")).contains("invalid AWS region"));
    }

    #[test]
    fn region_from_public_fips_dualstack_and_vpce_hosts() {
        let cases = [
            ("https://bedrock-runtime.us-east-1.amazonaws.com", "us-east-1"),
            ("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
            ("https://bedrock-runtime.eu-central-1.api.aws", "eu-central-1"),
            ("https://bedrock-runtime-fips.us-east-2.api.aws/", "us-east-2"),
            (
                "https://vpce-0a1b2c3d4e5f67890-abcdefgh.bedrock-runtime.ap-northeast-1.vpce.amazonaws.com",
                "ap-northeast-1",
            ),
            (
                "https://vpce-1-a.us-west-2a.bedrock-runtime.us-west-2.vpce.amazonaws.com",
                "us-west-2",
            ),
            ("https://BEDROCK-RUNTIME.EU-WEST-3.AMAZONAWS.COM", "eu-west-3"),
        ];
        for (url, region) in cases {
            let e = ok(Some(url), None);
            assert_eq!(e.region, region, "{url}");
            assert_eq!(e.scheme, Scheme::Https);
            assert_eq!(e.port, None);
            assert_eq!(e.authority(), e.host);
        }
    }

    #[test]
    fn region_not_derivable() {
        for url in [
            "http://127.0.0.1:9000",
            "http://localhost",
            "https://bedrock.us-east-1.amazonaws.com",
            "https://xbedrock-runtime.us-east-1.amazonaws.com",
            "https://bedrock-runtime.amazonaws.com",
            "https://bedrock-runtime.us-east-1.amazonaws.com.cn",
            "https://bedrock-runtime.us-east-1.amazonaws.com.evil.example",
            "https://bedrock-runtime..amazonaws.com",
        ] {
            let e = err(Some(url), None);
            assert!(e.contains("AWS_BEDROCK_RUNTIME_ENDPOINT"), "{url}: {e}");
        }
        assert_eq!(
            region_from_host("bedrock-runtime.us-east-1.amazonaws.com.cn"),
            None
        );
        assert_eq!(
            region_from_host("a.bedrock-runtime-fipsx.us-east-1.api.aws"),
            None
        );
    }

    #[test]
    fn explicit_region_wins_over_host() {
        let e = ok(
            Some("https://bedrock-runtime.us-east-1.amazonaws.com"),
            Some("us-west-2"),
        );
        assert_eq!(e.region, "us-west-2");
    }

    #[test]
    fn local_and_ip_overrides() {
        let e = ok(Some("http://127.0.0.1:9000"), Some("ap-northeast-1"));
        assert_eq!(e.scheme, Scheme::Http);
        assert_eq!(e.host, "127.0.0.1");
        assert_eq!(e.port, Some(9000));
        assert_eq!(e.authority(), "127.0.0.1:9000");
        assert_eq!(e.port_or_default(), 9000);

        let e = ok(Some("http://localhost/"), Some("us-east-1"));
        assert_eq!(e.authority(), "localhost");
        assert_eq!(e.port_or_default(), 80);

        let e = ok(Some("HTTP://LocalHost:80"), Some("us-east-1"));
        assert_eq!(e.host, "localhost");
        assert_eq!(e.port, Some(80));
        assert_eq!(e.authority(), "localhost", "default port is not sent");

        let e = ok(Some("https://localhost:443"), Some("us-east-1"));
        assert_eq!(e.authority(), "localhost");
        let e = ok(Some("https://localhost:80"), Some("us-east-1"));
        assert_eq!(e.authority(), "localhost:80");
        let e = ok(Some("http://localhost:443"), Some("us-east-1"));
        assert_eq!(e.authority(), "localhost:443");

        let e = ok(Some("http://[::1]:8080/"), Some("us-east-1"));
        assert_eq!(e.host, "[::1]");
        assert_eq!(e.authority(), "[::1]:8080");
        let e = ok(Some("https://[FD00::1]"), Some("us-east-1"));
        assert_eq!(e.authority(), "[fd00::1]");

        let e = ok(
            Some("https://vpce-0a1b2c3d4e5f67890-abcdefgh.bedrock-runtime.ap-northeast-1.vpce.amazonaws.com:8443"),
            None,
        );
        assert_eq!(e.region, "ap-northeast-1");
        assert_eq!(
            e.authority(),
            "vpce-0a1b2c3d4e5f67890-abcdefgh.bedrock-runtime.ap-northeast-1.vpce.amazonaws.com:8443"
        );
    }

    #[test]
    fn rejects_bad_overrides() {
        let r = Some("us-east-1");
        for url in [
            "bedrock-runtime.us-east-1.amazonaws.com",
            "ftp://host",
            "https://",
            "https:///",
            "https://host/path",
            "https://host//",
            "https://host/model/x/invoke",
            "https://host?x=1",
            "https://host/?x=1",
            "https://host#frag",
            "https://user:pw@host",
            "https://user@host",
            "https://host:",
            "https://host:0",
            "https://host:65536",
            "https://host:99999999",
            "https://host:+80",
            "https://host:80:81",
            "https://ho st",
            "https://host\r\nX-Injected: 1",
            "https://host\\foo",
            "https://[::1",
            "https://[::1]x",
            "https://[zz]",
            "https://[]",
            "https://.host",
            "https://a..b",
            "https://h_st",
            "https://hóst",
            "//host",
        ] {
            let e = err(Some(url), r);
            assert!(e.contains("AWS_BEDROCK_RUNTIME_ENDPOINT"), "{url}: {e}");
        }
    }

    #[test]
    fn agent_runtime_endpoint() {
        let e = Endpoint::resolve_agent_runtime(None, None, "eu-west-1").unwrap();
        assert_eq!(
            e.authority(),
            "bedrock-agent-runtime.eu-west-1.amazonaws.com"
        );
        assert_eq!((e.scheme, e.region.as_str()), (Scheme::Https, "eu-west-1"));
        let e = Endpoint::resolve_agent_runtime(Some(" "), Some("us-west-2"), "eu-west-1").unwrap();
        assert_eq!(
            e.authority(),
            "bedrock-agent-runtime.us-west-2.amazonaws.com"
        );
        // An override (a VPC endpoint, the emulator) is signed for the configured region, else
        // the runtime's.
        let vpce = "https://vpce-0a1-b.bedrock-agent-runtime.eu-west-1.vpce.amazonaws.com";
        let e = Endpoint::resolve_agent_runtime(Some(vpce), None, "eu-west-1").unwrap();
        assert_eq!(e.region, "eu-west-1");
        assert_eq!(e.authority(), &vpce["https://".len()..]);
        let e =
            Endpoint::resolve_agent_runtime(Some(vpce), Some("us-east-2"), "eu-west-1").unwrap();
        assert_eq!(e.region, "us-east-2");
        let e = Endpoint::resolve_agent_runtime(Some("http://127.0.0.1:9000"), None, "eu-west-1")
            .unwrap();
        assert_eq!(e.region, "eu-west-1");
        let e = Endpoint::resolve_agent_runtime(Some("http://127.0.0.1:9000/"), None, "us-east-1")
            .unwrap();
        assert_eq!(e.authority(), "127.0.0.1:9000");
        for url in ["https://host/path", "ftp://h", "https://u@h", "https://h:0"] {
            let e = Endpoint::resolve_agent_runtime(Some(url), None, "us-east-1").unwrap_err();
            assert!(
                e.contains("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT"),
                "{url}: {e}"
            );
        }
        let e = Endpoint::resolve_agent_runtime(None, Some("US"), "us-east-1").unwrap_err();
        assert!(e.contains("invalid AWS region"), "{e}");
    }

    #[test]
    fn error_messages_escape_control_characters() {
        let e = err(Some("https://a\nb"), Some("us-east-1"));
        assert!(!e.contains('\n'));
    }
}
