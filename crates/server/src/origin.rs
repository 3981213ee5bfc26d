//! The `Origin` check for WebSocket upgrades (pure; unit-tested).
//!
//! Browsers attach `Origin` to every WebSocket handshake and let any page open a socket to any
//! host, so the server must refuse pages it does not trust (cross-site WebSocket hijacking).

use crate::config::OriginPolicy;

/// Decides whether a handshake with this `Origin` (if any) and `Host` may proceed.
#[must_use]
pub fn origin_allowed(policy: &OriginPolicy, origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        // Non-browser clients send no Origin; the header protects browsers only.
        return true;
    };
    let origin = origin.trim().trim_end_matches('/');
    match policy {
        OriginPolicy::Any => true,
        OriginPolicy::List(allowed) => allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)),
        OriginPolicy::SameHost => host.is_some_and(|h| same_host(origin, h)),
    }
}

/// `scheme://host[:port]` against a `Host` header value `host[:port]`. A missing port means
/// the scheme's default on both sides (the Host header omits it exactly when it is default).
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // e.g. "null" from sandboxed frames and file: pages
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    match (
        split_authority(authority, default_port),
        split_authority(host.trim(), default_port),
    ) {
        (Some((oh, op)), Some((hh, hp))) => op == hp && oh.eq_ignore_ascii_case(hh),
        _ => false,
    }
}

/// Checks one `--allowed-origins` entry and returns it in the form browsers send: lowercase,
/// no trailing `/`, and no port when it is the scheme's default (a browser never writes
/// `:443` after `https://host`, so keeping it would make the entry match nothing).
///
/// `None` unless the entry is `http://host[:port]` or `https://host[:port]` with a host made of
/// letters, digits, `-` and `.` (or a bracketed IPv6 literal) and a port in 1..=65535.
#[must_use]
pub fn normalize_allowed_origin(entry: &str) -> Option<String> {
    let lower = entry.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = lower.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'));
    let (host, port) = split_authority(authority, default_port)?;
    let host_ok = if authority.starts_with('[') {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !host_ok || port == 0 {
        return None;
    }
    let host = if authority.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Some(if has_port && port != default_port {
        format!("{scheme}://{host}:{port}")
    } else {
        format!("{scheme}://{host}")
    })
}

/// Splits `host[:port]` (with `[v6]` literals) into host and port.
fn split_authority(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        (v6, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_origin_is_allowed_under_every_policy() {
        for p in [
            OriginPolicy::SameHost,
            OriginPolicy::Any,
            OriginPolicy::List(vec!["https://a.example".into()]),
        ] {
            assert!(origin_allowed(&p, None, Some("x")));
        }
    }

    #[test]
    fn same_host_policy() {
        let p = OriginPolicy::SameHost;
        let ok = |o: &str, h: &str| origin_allowed(&p, Some(o), Some(h));
        assert!(ok("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(ok("http://Chat.Example", "chat.example"));
        assert!(ok("http://chat.example", "chat.example:80"));
        assert!(ok("https://chat.example", "chat.example"));
        assert!(ok("http://[::1]:9000", "[::1]:9000"));
        assert!(ok("http://localhost:8080/", "localhost:8080"));
        assert!(!ok("http://evil.example:8080", "127.0.0.1:8080"));
        assert!(!ok("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!ok("https://chat.example", "chat.example:80"));
        assert!(!ok("null", "chat.example"));
        assert!(!ok("ftp://chat.example", "chat.example"));
        assert!(!ok("http://user@chat.example", "chat.example"));
        assert!(!origin_allowed(&p, Some("http://chat.example"), None));
    }

    #[test]
    fn list_and_any_policies() {
        let p = OriginPolicy::parse("https://chat.example, http://localhost:3000").unwrap();
        assert!(origin_allowed(
            &p,
            Some("https://CHAT.example"),
            Some("other")
        ));
        assert!(origin_allowed(&p, Some("http://localhost:3000"), None));
        assert!(!origin_allowed(
            &p,
            Some("http://chat.example"),
            Some("chat.example")
        ));
        assert!(origin_allowed(&OriginPolicy::Any, Some("null"), None));
    }

    #[test]
    fn allowed_origin_entries_are_normalized_like_browser_origins() {
        let n = normalize_allowed_origin;
        assert_eq!(
            n("HTTPS://Chat.Example/").as_deref(),
            Some("https://chat.example")
        );
        assert_eq!(
            n("https://chat.example:443").as_deref(),
            Some("https://chat.example")
        );
        assert_eq!(
            n("http://chat.example:80").as_deref(),
            Some("http://chat.example")
        );
        assert_eq!(
            n("http://localhost:3000").as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(n("http://[::1]:9000").as_deref(), Some("http://[::1]:9000"));
        assert_eq!(n("http://[::1]").as_deref(), Some("http://[::1]"));
        for bad in [
            "chat.example",
            "ws://chat.example",
            "http://",
            "http://:80",
            "http://chat.example:",
            "http://chat.example:0",
            "http://chat.example:65536",
            "http://[nope]:80",
            "http://chat.example/path",
            "http://a@chat.example",
            "http://chat.example?x",
            "http://chat_example",
        ] {
            assert_eq!(n(bad), None, "{bad:?} should be refused");
        }
        // A browser's Origin for a page on the default port matches the normalized entry.
        let p = OriginPolicy::parse("https://chat.example:443").unwrap();
        assert!(origin_allowed(&p, Some("https://chat.example"), None));
    }
}
