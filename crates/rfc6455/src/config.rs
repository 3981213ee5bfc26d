//! Codec configuration: the endpoint's role and its size limits.

/// Which end of the connection this codec serves.
///
/// The role decides masking (RFC 6455 §5.1): a client masks every frame it
/// sends and rejects masked frames it receives; a server does the opposite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The accepting end: expects masked frames, sends unmasked ones.
    Server,
    /// The connecting end: expects unmasked frames, sends masked ones.
    Client,
}

/// Limits and role for a [`Decoder`](crate::Decoder) or [`Reader`](crate::Reader).
///
/// Every limit is enforced from the frame header, before the payload is
/// buffered, so a peer cannot make the codec hold more than the limit.
///
/// ```
/// use rfc6455::{CodecConfig, Role};
/// let cfg = CodecConfig::server().with_max_frame_len(64 * 1024).with_max_message_len(256 * 1024);
/// assert_eq!(cfg.role, Role::Server);
/// assert_eq!(cfg.max_frame_len, 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodecConfig {
    /// The role this endpoint plays.
    pub role: Role,
    /// Largest accepted frame payload in bytes; larger frames fail with close 1009.
    pub max_frame_len: u64,
    /// Largest accepted (reassembled) message in bytes; larger ones fail with close 1009.
    pub max_message_len: usize,
    /// RSV bits (`0b100` = RSV1, `0b010` = RSV2, `0b001` = RSV3) that a negotiated
    /// extension allows. With none negotiated (the default), any set bit fails with 1002.
    pub allowed_rsv: u8,
    /// permessage-deflate as agreed in the handshake; `None` (the default) leaves
    /// RSV1 a protocol error. Set it with [`with_deflate`](Self::with_deflate).
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::DeflateParams>,
}

impl CodecConfig {
    /// Default limits for the server role: 1 MiB frames, 4 MiB messages, no RSV bits.
    #[must_use]
    pub const fn server() -> Self {
        Self {
            role: Role::Server,
            max_frame_len: 1 << 20,
            max_message_len: 4 << 20,
            allowed_rsv: 0,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// Default limits for the client role: 16 MiB frames, 64 MiB messages, no RSV bits.
    #[must_use]
    pub const fn client() -> Self {
        Self {
            role: Role::Client,
            max_frame_len: 16 << 20,
            max_message_len: 64 << 20,
            allowed_rsv: 0,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// Sets the largest accepted frame payload.
    #[must_use]
    pub const fn with_max_frame_len(mut self, len: u64) -> Self {
        self.max_frame_len = len;
        self
    }

    /// Sets the largest accepted message.
    #[must_use]
    pub const fn with_max_message_len(mut self, len: usize) -> Self {
        self.max_message_len = len;
        self
    }

    /// Allows the given RSV bits (as negotiated by an extension the caller implements).
    #[must_use]
    pub const fn with_allowed_rsv(mut self, bits: u8) -> Self {
        self.allowed_rsv = bits & 0b111;
        self
    }

    /// Turns on permessage-deflate with the parameters the handshake agreed on.
    ///
    /// A [`Reader`](crate::Reader) then accepts RSV1 on the first frame of a
    /// data message and inflates that message; RSV1 anywhere else stays a 1002.
    /// The message size limit applies to the inflated size.
    #[cfg(feature = "deflate")]
    #[must_use]
    pub const fn with_deflate(mut self, params: crate::deflate::DeflateParams) -> Self {
        self.allowed_rsv |= crate::deflate::RSV1;
        self.deflate = Some(params);
        self
    }
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self::server()
    }
}
