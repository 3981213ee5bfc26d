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
        let p = OriginPolicy::parse("https://chat.example, http://localhost:3000");
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
}
