//! Negotiation of permessage-deflate (RFC 7692 §5 and §7.1) in both roles.
//!
//! Everything here is text in, values out: no compression state is touched, so a
//! server can decide what to answer before it allocates anything.

use std::borrow::Cow;
use std::fmt;

use crate::config::Role;

/// The registered name of the extension (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// One element of a `Sec-WebSocket-Extensions` list (RFC 6455 §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extension token, such as `permessage-deflate`.
    pub name: &'a str,
    /// The parameters in the order they were written. A quoted value is given
    /// unquoted, so `a="10"` and `a=10` read the same.
    pub params: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

/// A `Sec-WebSocket-Extensions` value that does not follow the list grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed extension list at byte {at}: {reason}")]
pub struct ExtensionSyntaxError {
    /// The byte offset in the value where reading stopped.
    pub at: usize,
    /// What was expected there.
    pub reason: &'static str,
}

/// Parses one `Sec-WebSocket-Extensions` value into its elements, in order.
///
/// Empty list elements are skipped, as HTTP lists allow; several header lines
/// are one list, so call this once per line and chain the results.
///
/// ```
/// use rfc6455::deflate::parse_extensions;
///
/// let exts = parse_extensions("permessage-deflate; client_max_window_bits, x-foo").unwrap();
/// assert_eq!(exts.len(), 2);
/// assert_eq!(exts[0].params, [("client_max_window_bits", None)]);
/// assert!(parse_extensions("permessage-deflate;").is_err());
/// ```
pub fn parse_extensions(value: &str) -> Result<Vec<Extension<'_>>, ExtensionSyntaxError> {
    let mut c = Cursor { s: value, pos: 0 };
    let mut out = Vec::new();
    loop {
        c.skip_ows();
        match c.peek() {
            None => return Ok(out),
            Some(b',') => {
                c.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = c.token("expected an extension name")?;
        let mut params = Vec::new();
        loop {
            c.skip_ows();
            match c.peek() {
                None => break,
                Some(b',') => {
                    c.pos += 1;
                    break;
                }
                Some(b';') => {
                    c.pos += 1;
                    c.skip_ows();
                    let param = c.token("expected a parameter name")?;
                    c.skip_ows();
                    let value = if c.peek() == Some(b'=') {
                        c.pos += 1;
                        c.skip_ows();
                        Some(c.value()?)
                    } else {
                        None
                    };
                    params.push((param, value));
                }
                Some(_) => return Err(c.error("expected ';' or ','")),
            }
        }
        out.push(Extension { name, params });
    }
}

/// A byte cursor over a header value. Tokens are ASCII, so every slice taken at
/// a token boundary is also a `str` boundary.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn error(&self, reason: &'static str) -> ExtensionSyntaxError {
        ExtensionSyntaxError {
            at: self.pos,
            reason,
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self, reason: &'static str) -> Result<&'a str, ExtensionSyntaxError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error(reason));
        }
        Ok(&self.s[start..self.pos])
    }

    /// A parameter value: a token, or a quoted string that unescapes to a token
    /// (RFC 6455 §9.1 allows the quotes but not other content).
    fn value(&mut self) -> Result<Cow<'a, str>, ExtensionSyntaxError> {
        if self.peek() != Some(b'"') {
            return self.token("expected a parameter value").map(Cow::Borrowed);
        }
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => {
                    // The first escape forces a copy; until then the value is borrowed.
                    let s = owned.get_or_insert_with(|| self.s[start..self.pos].to_owned());
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if is_tchar(b) => s.push(char::from(b)),
                        _ => return Err(self.error("quoted value is not a token")),
                    }
                }
                Some(b) if is_tchar(b) => {
                    if let Some(s) = owned.as_mut() {
                        s.push(char::from(b));
                    }
                }
                None => return Err(self.error("unterminated quoted value")),
                Some(_) => return Err(self.error("quoted value is not a token")),
            }
            self.pos += 1;
        }
        let end = self.pos;
        self.pos += 1;
        match owned {
            Some(s) if !s.is_empty() => Ok(Cow::Owned(s)),
            None if end > start => Ok(Cow::Borrowed(&self.s[start..end])),
            _ => Err(self.error("quoted value is empty")),
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A parameter set that RFC 7692 §7.1 does not allow; the offer holding it is
/// declined by a server, and a response holding it fails a client's connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateParamError {
    /// A parameter permessage-deflate does not define.
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    /// The same parameter appears twice in one element.
    #[error("permessage-deflate parameter {0} given twice")]
    DuplicateParameter(&'static str),
    /// A value on one of the `*_no_context_takeover` flags.
    #[error("permessage-deflate parameter {0} takes no value")]
    UnexpectedValue(&'static str),
    /// A window-bits parameter without the value it needs here.
    #[error("permessage-deflate parameter {0} needs a value")]
    MissingValue(&'static str),
    /// A window-bits value that is not a decimal 8..=15 without leading zeros.
    #[error("permessage-deflate parameter {param} has invalid value {value:?}")]
    InvalidWindowBits {
        /// The parameter's name.
        param: &'static str,
        /// The value as written (unquoted).
        value: String,
    },
}

/// What an offer says about `client_max_window_bits` (RFC 7692 §7.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientMaxWindowBits {
    /// Not in the offer: the server may not limit the client's window.
    #[default]
    Absent,
    /// Present without a value: the client can honour a limit the server picks.
    Supported,
    /// Present with a value: the client will not use a larger window, and can
    /// honour a smaller limit.
    Limit(u8),
}

/// One permessage-deflate offer: what a client sends, or what a server read.
///
/// `Default` is the bare offer `permessage-deflate`, which every server that
/// supports the extension can accept; it suits a compressor whose window is
/// fixed at 15 bits (flate2's pure-Rust backend), since it never lets the
/// server ask the client for a smaller one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateOffer {
    /// Asks the server to compress each message on its own.
    pub server_no_context_takeover: bool,
    /// Promises that the client compresses each message on its own.
    pub client_no_context_takeover: bool,
    /// The largest window, 8..=15, the server may compress with.
    pub server_max_window_bits: Option<u8>,
    /// The client's side of the window-size negotiation.
    pub client_max_window_bits: ClientMaxWindowBits,
}

/// The parameters both ends agreed on: what a server's response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The server compresses each message with fresh state.
    pub server_no_context_takeover: bool,
    /// The client compresses each message with fresh state.
    pub client_no_context_takeover: bool,
    /// The largest window, 8..=15, the server compresses with; `None` is 15.
    pub server_max_window_bits: Option<u8>,
    /// The largest window, 8..=15, the client compresses with; `None` is 15.
    pub client_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// Whether the endpoint in `role` must reset its compressor before every
    /// message.
    pub fn compress_no_context_takeover(&self, role: Role) -> bool {
        match role {
            Role::Server => self.server_no_context_takeover,
            Role::Client => self.client_no_context_takeover,
        }
    }

    /// Whether the endpoint in `role` may reset its decompressor before every
    /// message, because its peer promised not to refer back to older ones.
    pub fn decompress_no_context_takeover(&self, role: Role) -> bool {
        match role {
            Role::Server => self.client_no_context_takeover,
            Role::Client => self.server_no_context_takeover,
        }
    }

    /// The `Sec-WebSocket-Extensions` value of the server's response.
    pub fn header_value(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for DeflateParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PERMESSAGE_DEFLATE)?;
        if self.server_no_context_takeover {
            write!(f, "; {SERVER_NO_CONTEXT_TAKEOVER}")?;
        }
        if self.client_no_context_takeover {
            write!(f, "; {CLIENT_NO_CONTEXT_TAKEOVER}")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; {SERVER_MAX_WINDOW_BITS}={bits}")?;
        }
        if let Some(bits) = self.client_max_window_bits {
            write!(f, "; {CLIENT_MAX_WINDOW_BITS}={bits}")?;
        }
        Ok(())
    }
}

impl fmt::Display for DeflateOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PERMESSAGE_DEFLATE)?;
        if self.server_no_context_takeover {
            write!(f, "; {SERVER_NO_CONTEXT_TAKEOVER}")?;
        }
        if self.client_no_context_takeover {
            write!(f, "; {CLIENT_NO_CONTEXT_TAKEOVER}")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; {SERVER_MAX_WINDOW_BITS}={bits}")?;
        }
        match self.client_max_window_bits {
            ClientMaxWindowBits::Absent => {}
            ClientMaxWindowBits::Supported => write!(f, "; {CLIENT_MAX_WINDOW_BITS}")?,
            ClientMaxWindowBits::Limit(bits) => write!(f, "; {CLIENT_MAX_WINDOW_BITS}={bits}")?,
        }
        Ok(())
    }
}

impl DeflateOffer {
    /// Reads the parameters of one `permessage-deflate` element as an offer.
    ///
    /// The element's name is not checked; the caller has matched it already.
    pub fn parse(ext: &Extension<'_>) -> Result<Self, DeflateParamError> {
        let mut offer = DeflateOffer::default();
        let mut seen = [false; 4];
        for (name, value) in &ext.params {
            let (index, name) = match *name {
                SERVER_NO_CONTEXT_TAKEOVER => (0, SERVER_NO_CONTEXT_TAKEOVER),
                CLIENT_NO_CONTEXT_TAKEOVER => (1, CLIENT_NO_CONTEXT_TAKEOVER),
                SERVER_MAX_WINDOW_BITS => (2, SERVER_MAX_WINDOW_BITS),
                CLIENT_MAX_WINDOW_BITS => (3, CLIENT_MAX_WINDOW_BITS),
                other => return Err(DeflateParamError::UnknownParameter(other.to_owned())),
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(DeflateParamError::DuplicateParameter(name));
            }
            let value = value.as_deref();
            match (index, value) {
                (0 | 1, Some(_)) => return Err(DeflateParamError::UnexpectedValue(name)),
                (0, None) => offer.server_no_context_takeover = true,
                (1, None) => offer.client_no_context_takeover = true,
                // Unlike the client's, the server's window has no "supported" form:
                // an offer either limits it or leaves it out (§7.1.2.1).
                (2, None) => return Err(DeflateParamError::MissingValue(name)),
                (2, Some(v)) => offer.server_max_window_bits = Some(window_bits(name, v)?),
                (_, None) => offer.client_max_window_bits = ClientMaxWindowBits::Supported,
                (_, Some(v)) => {
                    offer.client_max_window_bits = ClientMaxWindowBits::Limit(window_bits(name, v)?)
                }
            }
        }
        Ok(offer)
    }

    /// The `Sec-WebSocket-Extensions` value a client sends for this offer.
    pub fn header_value(&self) -> String {
        self.to_string()
    }

    /// Checks a server's `Sec-WebSocket-Extensions` values (all lines, in order)
    /// against this offer, as the only extension the client offered.
    ///
    /// `Ok(None)` means the server declined and the connection goes on without
    /// compression; an error means the client must fail the connection.
    ///
    /// ```
    /// use rfc6455::deflate::{DeflateOffer, DeflateParams};
    ///
    /// let offer = DeflateOffer { server_no_context_takeover: true, ..Default::default() };
    /// let agreed = offer.check_response(["permessage-deflate; server_no_context_takeover"]);
    /// assert_eq!(
    ///     agreed,
    ///     Ok(Some(DeflateParams { server_no_context_takeover: true, ..Default::default() }))
    /// );
    /// // The server may not keep its context when it was asked not to.
    /// assert!(offer.check_response(["permessage-deflate"]).is_err());
    /// ```
    pub fn check_response<'h>(
        &self,
        header_values: impl IntoIterator<Item = &'h str>,
    ) -> Result<Option<DeflateParams>, DeflateResponseError> {
        let mut found = None;
        for value in header_values {
            for ext in parse_extensions(value)? {
                if ext.name != PERMESSAGE_DEFLATE {
                    return Err(DeflateResponseError::UnexpectedExtension(
                        ext.name.to_owned(),
                    ));
                }
                if found.is_some() {
                    return Err(DeflateResponseError::RepeatedExtension);
                }
                found = Some(DeflateOffer::parse(&ext)?);
            }
        }
        let Some(answer) = found else {
            return Ok(None);
        };
        let client_max_window_bits =
            match (answer.client_max_window_bits, self.client_max_window_bits) {
                (ClientMaxWindowBits::Absent, _) => None,
                (ClientMaxWindowBits::Supported, _) => {
                    return Err(DeflateParamError::MissingValue(CLIENT_MAX_WINDOW_BITS).into())
                }
                (ClientMaxWindowBits::Limit(_), ClientMaxWindowBits::Absent) => {
                    return Err(DeflateResponseError::ClientWindowBitsNotOffered)
                }
                // The server may ignore the limit we offered (§7.1.2.2); we keep to
                // whichever of the two is smaller.
                (ClientMaxWindowBits::Limit(bits), ClientMaxWindowBits::Limit(ours)) => {
                    Some(bits.min(ours))
                }
                (ClientMaxWindowBits::Limit(bits), ClientMaxWindowBits::Supported) => Some(bits),
            };
        if let Some(offered) = self.server_max_window_bits {
            match answer.server_max_window_bits {
                None => return Err(DeflateResponseError::ServerWindowBitsMissing { offered }),
                Some(answered) if answered > offered => {
                    return Err(DeflateResponseError::ServerWindowBitsTooLarge {
                        offered,
                        answered,
                    })
                }
                Some(_) => {}
            }
        }
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err(DeflateResponseError::ServerContextTakeoverKept);
        }
        Ok(Some(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: answer.server_max_window_bits,
            client_max_window_bits,
        }))
    }
}

/// A decimal 8..=15 with no sign and no leading zero (RFC 7692 §7.1.2).
fn window_bits(param: &'static str, value: &str) -> Result<u8, DeflateParamError> {
    // `u8::from_str` alone would let "+9" and "09" through.
    if !value.starts_with('0') && value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(bits @ 8..=15) = value.parse::<u8>() {
            return Ok(bits);
        }
    }
    Err(DeflateParamError::InvalidWindowBits {
        param,
        value: value.to_owned(),
    })
}

/// A server response that a client must fail the connection over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateResponseError {
    /// The header does not follow the list grammar.
    #[error(transparent)]
    Syntax(#[from] ExtensionSyntaxError),
    /// The server selected an extension the client did not offer.
    #[error("server selected extension {0:?}, which was not offered")]
    UnexpectedExtension(String),
    /// permessage-deflate appears more than once.
    #[error("server selected permessage-deflate twice")]
    RepeatedExtension,
    /// The parameters break RFC 7692 §7.1.
    #[error(transparent)]
    InvalidParams(#[from] DeflateParamError),
    /// The server limited the client's window though the offer did not allow it.
    #[error("server sent client_max_window_bits, which was not offered")]
    ClientWindowBitsNotOffered,
    /// The server chose a larger window than the offer allowed it.
    #[error("server_max_window_bits {answered} exceeds the offered {offered}")]
    ServerWindowBitsTooLarge {
        /// The limit in the offer.
        offered: u8,
        /// The value in the response.
        answered: u8,
    },
    /// The offer limited the server's window and the response does not confirm it.
    #[error("server did not confirm server_max_window_bits={offered}")]
    ServerWindowBitsMissing {
        /// The limit in the offer.
        offered: u8,
    },
    /// The offer asked for server_no_context_takeover and the response lacks it.
    #[error("server did not confirm server_no_context_takeover")]
    ServerContextTakeoverKept,
}

/// How a server answers permessage-deflate offers.
///
/// `Default` is the memory-lean choice: neither end keeps context between
/// messages, so no compression state needs to outlive a message, and the
/// server's window is 15 bits, the only one flate2's pure-Rust backend has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflatePolicy {
    /// Whether this server keeps its compressor's history between messages.
    /// When false every response carries `server_no_context_takeover`; when
    /// true it is still granted to a client that asks for it.
    pub server_context_takeover: bool,
    /// Whether clients may keep their compressor's history between messages.
    /// When false every response carries `client_no_context_takeover`.
    pub client_context_takeover: bool,
    /// The window, 8..=15, this server's compressor uses. Offers that cap the
    /// server's window below it are declined, since it could not keep to them.
    /// Values outside 8..=15 are clamped.
    pub server_window_bits: u8,
    /// A cap, 8..=15, on the client's window, sent when the offer says the
    /// client can honour one; it bounds the history a decompressor keeps.
    /// Values outside 8..=15 are clamped.
    pub client_max_window_bits: Option<u8>,
}

impl Default for DeflatePolicy {
    fn default() -> Self {
        DeflatePolicy {
            server_context_takeover: false,
            client_context_takeover: false,
            server_window_bits: 15,
            client_max_window_bits: None,
        }
    }
}

impl DeflatePolicy {
    /// Picks the first acceptable permessage-deflate offer from the request's
    /// `Sec-WebSocket-Extensions` values (all lines, in order), and returns the
    /// parameters to answer with ([`DeflateParams::header_value`]).
    ///
    /// Offers with invalid parameters are declined, as RFC 7692 §5 asks, and
    /// the next one is tried; `Ok(None)` means none was acceptable. A value that
    /// breaks the list grammar is an error, so the caller chooses between a 400
    /// and going on without extensions.
    ///
    /// ```
    /// use rfc6455::deflate::DeflatePolicy;
    ///
    /// let offers = "permessage-deflate; server_max_window_bits=10, \
    ///               permessage-deflate; client_max_window_bits";
    /// let agreed = DeflatePolicy::default().negotiate([offers]).unwrap().unwrap();
    /// assert_eq!(
    ///     agreed.header_value(),
    ///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    /// );
    /// ```
    pub fn negotiate<'h>(
        &self,
        header_values: impl IntoIterator<Item = &'h str>,
    ) -> Result<Option<DeflateParams>, ExtensionSyntaxError> {
        // Parse everything first, so a malformed later line is reported even
        // when an earlier offer would have been accepted.
        let mut extensions = Vec::new();
        for value in header_values {
            extensions.extend(parse_extensions(value)?);
        }
        Ok(extensions
            .iter()
            .filter(|ext| ext.name == PERMESSAGE_DEFLATE)
            .filter_map(|ext| DeflateOffer::parse(ext).ok())
            .find_map(|offer| self.accept(&offer)))
    }

    /// The answer to one valid offer, or `None` if this policy must decline it.
    pub fn accept(&self, offer: &DeflateOffer) -> Option<DeflateParams> {
        let ours = self.server_window_bits.clamp(8, 15);
        let server_max_window_bits = match offer.server_max_window_bits {
            Some(limit) if limit < ours => return None,
            // Accepting a cap means confirming it; we answer with the window
            // we really use, which is within it.
            Some(_) => Some(ours),
            None if ours < 15 => Some(ours),
            None => None,
        };
        let cap = self.client_max_window_bits.map(|b| b.clamp(8, 15));
        let client_max_window_bits = match offer.client_max_window_bits {
            ClientMaxWindowBits::Absent => None,
            ClientMaxWindowBits::Supported => cap,
            ClientMaxWindowBits::Limit(theirs) => Some(cap.map_or(theirs, |c| c.min(theirs))),
        };
        Some(DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover
                || !self.server_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || !self.client_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Result<DeflateOffer, DeflateParamError> {
        let exts = parse_extensions(value).unwrap();
        assert_eq!(exts.len(), 1);
        DeflateOffer::parse(&exts[0])
    }

    const TAKEOVER: DeflatePolicy = DeflatePolicy {
        server_context_takeover: true,
        client_context_takeover: true,
        server_window_bits: 15,
        client_max_window_bits: None,
    };

    #[test]
    fn parses_several_extensions_and_params() {
        let exts = parse_extensions(
            " x-webkit ,permessage-deflate ;client_max_window_bits; server_max_window_bits = \"10\",, foo;a=b\t",
        )
        .unwrap();
        let names: Vec<_> = exts.iter().map(|e| e.name).collect();
        assert_eq!(names, ["x-webkit", "permessage-deflate", "foo"]);
        assert_eq!(
            exts[1].params,
            [
                ("client_max_window_bits", None),
                ("server_max_window_bits", Some(Cow::Borrowed("10"))),
            ]
        );
        assert_eq!(exts[2].params, [("a", Some(Cow::Borrowed("b")))]);
        assert_eq!(parse_extensions("").unwrap(), []);
        assert_eq!(parse_extensions(" , ").unwrap(), []);
    }

    #[test]
    fn quoted_values_unescape_to_tokens() {
        let exts = parse_extensions(r#"e; a="1\0"; b="x""#).unwrap();
        assert_eq!(exts[0].params[0].1.as_deref(), Some("10"));
        assert!(matches!(exts[0].params[0].1, Some(Cow::Owned(_))));
        assert_eq!(exts[0].params[1].1.as_deref(), Some("x"));
        for bad in [
            r#"e; a="1 0""#,
            r#"e; a="""#,
            r#"e; a="10"#,
            r#"e; a="1,0""#,
        ] {
            assert!(parse_extensions(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_broken_syntax() {
        for bad in [
            "pmd;",
            "pmd; =1",
            "pmd; a=",
            "pmd a",
            ";a",
            "pmd; a b",
            "pmd, é",
            "pmd; a=1=2",
        ] {
            assert!(parse_extensions(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_extensions("pmd x"),
            Err(ExtensionSyntaxError {
                at: 4,
                reason: "expected ';' or ','"
            })
        );
    }

    #[test]
    fn reads_each_offer_parameter() {
        assert_eq!(
            offer("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8"),
            Ok(DeflateOffer {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(9),
                client_max_window_bits: ClientMaxWindowBits::Limit(8),
            })
        );
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits").map(|o| o.client_max_window_bits),
            Ok(ClientMaxWindowBits::Supported)
        );
        assert_eq!(offer("permessage-deflate"), Ok(DeflateOffer::default()));
    }

    #[test]
    fn rejects_unknown_duplicate_and_misvalued_parameters() {
        assert_eq!(
            offer("permessage-deflate; x=1"),
            Err(DeflateParamError::UnknownParameter("x".into()))
        );
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits; client_max_window_bits=10"),
            Err(DeflateParamError::DuplicateParameter(
                CLIENT_MAX_WINDOW_BITS
            ))
        );
        assert_eq!(
            offer("permessage-deflate; server_no_context_takeover=1"),
            Err(DeflateParamError::UnexpectedValue(
                SERVER_NO_CONTEXT_TAKEOVER
            ))
        );
        assert_eq!(
            offer("permessage-deflate; client_no_context_takeover=\"x\""),
            Err(DeflateParamError::UnexpectedValue(
                CLIENT_NO_CONTEXT_TAKEOVER
            ))
        );
        assert_eq!(
            offer("permessage-deflate; server_max_window_bits"),
            Err(DeflateParamError::MissingValue(SERVER_MAX_WINDOW_BITS))
        );
    }

    #[test]
    fn window_bits_are_8_to_15_without_leading_zeros() {
        for good in ["8", "9", "10", "15", "\"12\""] {
            let o = offer(&format!(
                "permessage-deflate; server_max_window_bits={good}"
            ))
            .unwrap();
            assert!(o.server_max_window_bits.is_some(), "{good}");
        }
        for bad in ["7", "16", "0", "08", "010", "+9", "1e1", "255", "256", "x"] {
            for param in [SERVER_MAX_WINDOW_BITS, CLIENT_MAX_WINDOW_BITS] {
                assert!(
                    matches!(
                        offer(&format!("permessage-deflate; {param}={bad}")),
                        Err(DeflateParamError::InvalidWindowBits { .. })
                    ),
                    "{param}={bad}"
                );
            }
        }
    }

    #[test]
    fn server_picks_the_first_acceptable_offer() {
        // The first is invalid, the second caps the server below 15, the third fits.
        let value = "x-other, permessage-deflate; server_max_window_bits, \
                     permessage-deflate; server_max_window_bits=12, \
                     permessage-deflate; client_max_window_bits=10";
        let agreed = TAKEOVER.negotiate([value]).unwrap().unwrap();
        assert_eq!(
            agreed.header_value(),
            "permessage-deflate; client_max_window_bits=10"
        );
        // Several header lines are one list, still in order.
        let agreed = TAKEOVER
            .negotiate([
                "permessage-deflate; foo",
                "permessage-deflate; server_no_context_takeover",
            ])
            .unwrap();
        assert_eq!(
            agreed.map(|a| a.header_value()).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        assert_eq!(TAKEOVER.negotiate(["x-other"]), Ok(None));
        assert_eq!(TAKEOVER.negotiate([] as [&str; 0]), Ok(None));
        assert!(TAKEOVER.negotiate(["permessage-deflate", "bad;"]).is_err());
    }

    #[test]
    fn server_policy_shapes_the_response() {
        let lean = DeflatePolicy {
            server_window_bits: 12,
            client_max_window_bits: Some(9),
            ..DeflatePolicy::default()
        };
        let agreed = lean.negotiate(["permessage-deflate; client_max_window_bits"]);
        assert_eq!(
            agreed.unwrap().unwrap().header_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=9"
        );
        // An offer's own client limit is kept when it is the smaller one.
        let agreed = lean.accept(&offer("permessage-deflate; client_max_window_bits=8").unwrap());
        assert_eq!(agreed.unwrap().client_max_window_bits, Some(8));
        // No cap for a client that cannot take one.
        assert_eq!(
            lean.accept(&DeflateOffer::default())
                .unwrap()
                .client_max_window_bits,
            None
        );
        // A cap at or above the server's window is confirmed with the real window.
        let agreed = lean.accept(&offer("permessage-deflate; server_max_window_bits=14").unwrap());
        assert_eq!(agreed.unwrap().server_max_window_bits, Some(12));
        assert_eq!(
            lean.accept(&offer("permessage-deflate; server_max_window_bits=11").unwrap()),
            None
        );
        // A client's request for no context takeover is granted even when the
        // policy would keep context.
        let agreed = TAKEOVER
            .accept(
                &offer(
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                )
                .unwrap(),
            )
            .unwrap();
        assert!(agreed.server_no_context_takeover && agreed.client_no_context_takeover);
        assert_eq!(
            TAKEOVER.accept(&DeflateOffer::default()),
            Some(DeflateParams::default())
        );
    }

    #[test]
    fn roles_read_the_params_from_their_side() {
        let p = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        assert!(p.compress_no_context_takeover(Role::Server));
        assert!(!p.compress_no_context_takeover(Role::Client));
        assert!(p.decompress_no_context_takeover(Role::Client));
        assert!(!p.decompress_no_context_takeover(Role::Server));
    }

    #[test]
    fn client_offer_round_trips_through_the_parser() {
        let o = DeflateOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: ClientMaxWindowBits::Supported,
        };
        assert_eq!(
            o.header_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits"
        );
        assert_eq!(offer(&o.header_value()), Ok(o));
        assert_eq!(DeflateOffer::default().header_value(), "permessage-deflate");
    }

    #[test]
    fn client_accepts_valid_responses() {
        let o = DeflateOffer {
            client_no_context_takeover: true,
            server_max_window_bits: Some(12),
            client_max_window_bits: ClientMaxWindowBits::Limit(11),
            ..DeflateOffer::default()
        };
        assert_eq!(
            o.check_response([
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=13"
            ]),
            Ok(Some(DeflateParams {
                server_no_context_takeover: false,
                client_no_context_takeover: true,
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(11),
            }))
        );
        assert_eq!(o.check_response([""]), Ok(None));
        assert_eq!(o.check_response([] as [&str; 0]), Ok(None));
        // The server may ask for no context takeover on either side unasked.
        let agreed = DeflateOffer::default()
            .check_response([
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ])
            .unwrap()
            .unwrap();
        assert!(agreed.server_no_context_takeover && agreed.client_no_context_takeover);
    }

    #[test]
    fn client_rejects_what_was_not_offered() {
        let plain = DeflateOffer::default();
        assert_eq!(
            plain.check_response(["permessage-deflate; client_max_window_bits=10"]),
            Err(DeflateResponseError::ClientWindowBitsNotOffered)
        );
        assert_eq!(
            plain.check_response(["x-foo"]),
            Err(DeflateResponseError::UnexpectedExtension("x-foo".into()))
        );
        assert_eq!(
            plain.check_response(["permessage-deflate", "permessage-deflate"]),
            Err(DeflateResponseError::RepeatedExtension)
        );
        assert_eq!(
            plain.check_response(["permessage-deflate; x"]),
            Err(DeflateResponseError::InvalidParams(
                DeflateParamError::UnknownParameter("x".into())
            ))
        );
        assert!(matches!(
            plain.check_response(["permessage-deflate;"]),
            Err(DeflateResponseError::Syntax(_))
        ));
        let supported = DeflateOffer {
            client_max_window_bits: ClientMaxWindowBits::Supported,
            ..DeflateOffer::default()
        };
        // A response must give the client's window a value.
        assert_eq!(
            supported.check_response(["permessage-deflate; client_max_window_bits"]),
            Err(DeflateParamError::MissingValue(CLIENT_MAX_WINDOW_BITS).into())
        );
        let capped = DeflateOffer {
            server_no_context_takeover: true,
            server_max_window_bits: Some(10),
            ..DeflateOffer::default()
        };
        assert_eq!(
            capped.check_response([
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11"
            ]),
            Err(DeflateResponseError::ServerWindowBitsTooLarge {
                offered: 10,
                answered: 11
            })
        );
        assert_eq!(
            capped.check_response(["permessage-deflate; server_no_context_takeover"]),
            Err(DeflateResponseError::ServerWindowBitsMissing { offered: 10 })
        );
        assert_eq!(
            capped.check_response(["permessage-deflate; server_max_window_bits=10"]),
            Err(DeflateResponseError::ServerContextTakeoverKept)
        );
    }

    #[test]
    fn policy_answers_are_accepted_by_the_matching_client() {
        let policies = [
            DeflatePolicy::default(),
            TAKEOVER,
            DeflatePolicy {
                server_window_bits: 9,
                client_max_window_bits: Some(10),
                ..TAKEOVER
            },
        ];
        let offers = [
            DeflateOffer::default(),
            DeflateOffer {
                server_no_context_takeover: true,
                client_max_window_bits: ClientMaxWindowBits::Supported,
                ..DeflateOffer::default()
            },
            DeflateOffer {
                server_max_window_bits: Some(15),
                client_max_window_bits: ClientMaxWindowBits::Limit(12),
                ..DeflateOffer::default()
            },
        ];
        for policy in policies {
            for o in offers {
                let agreed = policy
                    .negotiate([o.header_value().as_str()])
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    o.check_response([agreed.header_value().as_str()]),
                    Ok(Some(agreed)),
                    "{policy:?} {o:?}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(value in "\\PC{0,64}", raw in "[ -~\t]{0,64}") {
            for v in [value.as_str(), raw.as_str()] {
                let _ = parse_extensions(v);
                let _ = DeflatePolicy::default().negotiate([v]);
                let _ = DeflateOffer::default().check_response([v]);
            }
        }

        #[test]
        fn offers_built_from_parts_parse_back(
            snct: bool,
            cnct: bool,
            smwb in proptest::option::of(8u8..=15),
            cmwb in 0u8..=16,
        ) {
            let o = DeflateOffer {
                server_no_context_takeover: snct,
                client_no_context_takeover: cnct,
                server_max_window_bits: smwb,
                client_max_window_bits: match cmwb {
                    0 => ClientMaxWindowBits::Absent,
                    16 => ClientMaxWindowBits::Supported,
                    b => ClientMaxWindowBits::Limit(b.clamp(8, 15)),
                },
            };
            proptest::prop_assert_eq!(offer(&o.header_value()), Ok(o));
        }
    }
}
