//! Query strings: `a=1&b=x%20y`, percent-decoded, each key at most once.

use std::collections::HashMap;

/// The parameters of a query string. A repeated key, or bytes that do not decode to UTF-8,
/// make the whole query invalid (named in the error).
pub(crate) fn parse(query: Option<&str>) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key =
            decode(key).ok_or_else(|| "query is not valid percent-encoded UTF-8".to_owned())?;
        let value =
            decode(value).ok_or_else(|| "query is not valid percent-encoded UTF-8".to_owned())?;
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("query parameter {key:?} is repeated"));
        }
    }
    Ok(out)
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                // Two hex digits exactly: `from_str_radix` alone would also take a sign.
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses_repeats() {
        let q = parse(Some("prefix=al%20i+ce&limit=5&flag")).unwrap();
        assert_eq!(q["prefix"], "al i ce");
        assert_eq!(q["limit"], "5");
        assert_eq!(q["flag"], "");
        assert!(parse(Some("a=1&a=2")).is_err());
        assert!(parse(Some("a=%zz")).is_err());
        assert!(parse(Some("a=%ff")).is_err());
        assert!(parse(Some("a=%4")).is_err());
        assert!(parse(None).unwrap().is_empty());
        assert!(parse(Some("a=%+f")).is_err(), "a sign is not a hex digit");
    }

    /// Percent-encodes every byte that is not unreserved, as a client would.
    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(q in ".{0,200}") {
            let _ = parse(Some(&q));
        }

        #[test]
        fn what_a_client_encodes_comes_back(
            pairs in proptest::collection::hash_map("\\PC{1,12}", "\\PC{0,24}", 0..6)
        ) {
            let query: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            let parsed = parse(Some(&query.join("&"))).unwrap();
            proptest::prop_assert_eq!(parsed, pairs);
        }
    }
}
