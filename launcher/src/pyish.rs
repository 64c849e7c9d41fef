//! The few Python semantics the rendered config and its messages depend on, kept exact so that
//! the launcher renders what the former `envoy/launch.py` rendered: `urllib.parse.urlsplit` (host, port),
//! `int()`, `repr()` of a string, `json.dumps` (ASCII escapes) and `ipaddress.ip_address`.

use std::net::IpAddr;

/// What `urlsplit` gives the launcher: the lower-cased scheme, the host name (lower-cased, an
/// IPv6 zone kept as is) and the port (`Err` with Python's reason when it is not a port).
pub struct UrlParts {
    pub scheme: String,
    pub hostname: Option<String>,
    pub port: Result<Option<u16>, String>,
}

/// `urllib.parse.urlsplit(url)` as Python 3.11 does it, for scheme, hostname and port; `Err`
/// where urlsplit raises (brackets that do not form an IP literal).
pub fn split_url(url: &str) -> Result<UrlParts, String> {
    let url: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let mut scheme = String::new();
    let mut rest = url.as_str();
    if let Some(i) = url.find(':') {
        let candidate = &url[..i];
        let starts_alpha = candidate
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
        if i > 0
            && starts_alpha
            && candidate
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            scheme = candidate.to_ascii_lowercase();
            rest = &url[i + 1..];
        }
    }
    let mut netloc = "";
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        netloc = &after[..end];
        if netloc.contains('[') != netloc.contains(']') {
            return Err("Invalid IPv6 URL".into());
        }
        if netloc.contains('[') {
            let bracketed = netloc
                .split_once('[')
                .map(|(_, b)| b.split_once(']').map_or(b, |(h, _)| h))
                .unwrap_or_default();
            check_bracketed_host(bracketed)?;
        }
    }
    let hostinfo = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    let (host, port) = match hostinfo.split_once('[') {
        Some((_, bracketed)) => {
            let (h, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
            (h, after.split_once(':').map_or("", |(_, p)| p))
        }
        None => hostinfo.split_once(':').unwrap_or((hostinfo, "")),
    };
    let hostname = (!host.is_empty()).then(|| match host.split_once('%') {
        Some((h, zone)) => format!("{}%{zone}", h.to_lowercase()),
        None => host.to_lowercase(),
    });
    let port = if port.is_empty() {
        Ok(None)
    } else if port.bytes().all(|b| b.is_ascii_digit()) {
        match port.trim_start_matches('0').parse::<u32>() {
            _ if port.trim_start_matches('0').is_empty() => Ok(Some(0)),
            Ok(p) if p <= 65535 => Ok(Some(p as u16)),
            _ => Err("Port out of range 0-65535".to_string()),
        }
    } else {
        Err(format!(
            "Port could not be cast to integer value as {}",
            py_repr(port)
        ))
    };
    Ok(UrlParts {
        scheme,
        hostname,
        port,
    })
}

fn check_bracketed_host(host: &str) -> Result<(), String> {
    if let Some(future) = host.strip_prefix('v') {
        let (hex, rest) = future.split_once('.').unwrap_or(("", ""));
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || rest.is_empty() {
            return Err("IPvFuture address is invalid".into());
        }
        return Ok(());
    }
    match parse_ip(host) {
        Some(IpAddr::V6(_)) => Ok(()),
        Some(IpAddr::V4(_)) => Err("An IPv4 address cannot be in brackets".into()),
        None => Err(format!(
            "{} does not appear to be an IPv4 or IPv6 address",
            py_repr(host)
        )),
    }
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    // An IPv6 address with a scope (fe80::1%eth0), which Python accepts.
    let (addr, zone) = host.split_once('%')?;
    (!zone.is_empty() && !zone.contains('%'))
        .then(|| addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
        .flatten()
}

/// `ipaddress.ip_address(host)` succeeds.
pub fn is_ip(host: &str) -> bool {
    parse_ip(host).is_some()
}

/// Python's `int(text)` for base 10: `Ok(value)`, `Err(Some(digits))` for an integer too large
/// for i128 (its normalized decimal digits), `Err(None)` when it is not an integer.
pub fn py_int(text: &str) -> Result<i128, Option<String>> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let valid = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(None);
    }
    let plain: String = digits.chars().filter(|c| *c != '_').collect();
    match plain.parse::<i128>() {
        Ok(v) => Ok(if negative { -v } else { v }),
        Err(_) => {
            let d = plain.trim_start_matches('0');
            Err(Some(format!("{}{d}", if negative { "-" } else { "" })))
        }
    }
}

/// `repr(text)` for a Python string: quotes, backslash escapes for quotes, `\\`, `\n`, `\r`,
/// `\t` and other control characters.
pub fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A JSON string as `json.dumps` writes it (ensure_ascii): non-ASCII as `\uXXXX` (surrogate
/// pairs above U+FFFF), lower-case hex.
pub fn to_json_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urlsplit_host_and_port() {
        let p = split_url("HTTPS://User@Git.Example.COM:0443/x").unwrap();
        assert_eq!(p.scheme, "https");
        assert_eq!(p.hostname.as_deref(), Some("git.example.com"));
        assert_eq!(p.port, Ok(Some(443)));
        let p = split_url("http://[FD00:EC2::254]:80/").unwrap();
        assert_eq!(p.hostname.as_deref(), Some("fd00:ec2::254"));
        assert!(split_url("http://[1.2.3.4]/").is_err());
        assert!(split_url("http://[::1/").is_err());
        assert!(split_url("http://h:99999").unwrap().port.is_err());
        assert!(split_url("http://h:8x").unwrap().port.is_err());
        assert_eq!(split_url("gitlab.example.com").unwrap().hostname, None);
        assert_eq!(split_url("http://h:").unwrap().port, Ok(None));
    }

    #[test]
    fn python_int_repr_and_json() {
        assert_eq!(py_int(" 1_000 "), Ok(1000));
        assert_eq!(py_int("-007"), Ok(-7));
        assert_eq!(py_int("1__0"), Err(None));
        assert_eq!(py_int("x"), Err(None));
        assert_eq!(
            py_int("0999999999999999999999999999999999999999999"),
            Err(Some("999999999999999999999999999999999999999999".into()))
        );
        assert_eq!(py_repr("a'b"), "\"a'b\"");
        assert_eq!(py_repr("a\nb"), "'a\\nb'");
        assert_eq!(
            to_json_ascii("é😀\"\u{1}"),
            r#""\u00e9\ud83d\ude00\"\u0001""#
        );
        assert!(is_ip("fe80::1%eth0") && is_ip("10.0.0.1") && !is_ip("010.0.0.1"));
    }
}
