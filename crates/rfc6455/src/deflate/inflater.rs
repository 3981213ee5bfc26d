//! The receive side's decompression state, as the message assembler holds it.

use bytes::BytesMut;

use super::compress::{InflateError, MessageDecompressor};
use super::negotiate::DeflateParams;
use crate::config::Role;
use crate::error::ProtocolError;

/// A [`MessageDecompressor`] for one connection's receive side.
///
/// When the peer promised no context takeover the decompressor is
/// [shared](MessageDecompressor::shared): deflate state is borrowed from the
/// thread for each message, and an idle connection holds none. Otherwise it is
/// dedicated, created on the first compressed message and kept.
#[derive(Debug)]
pub(crate) struct Inflater {
    decompressor: MessageDecompressor,
    /// A clone of an inflater that held history from earlier messages, or that
    /// was in the middle of one. flate2 cannot copy deflate state, and
    /// inflating without it can silently produce wrong bytes, so every further
    /// compressed message is refused.
    lost: bool,
}

impl Clone for Inflater {
    fn clone(&self) -> Self {
        let d = &self.decompressor;
        let history = d.in_message() || (!d.no_context_takeover() && d.holds_state());
        Self {
            decompressor: Self::fresh(d.no_context_takeover()),
            lost: self.lost || history,
        }
    }
}

impl Inflater {
    /// The inflater for the endpoint in `role` under the agreed `params`.
    pub(crate) const fn new(params: &DeflateParams, role: Role) -> Self {
        // What `DeflateParams::decompress_no_context_takeover` says, in a
        // const context: the peer's promise decides.
        let no_context_takeover = match role {
            Role::Server => params.client_no_context_takeover,
            Role::Client => params.server_no_context_takeover,
        };
        Self {
            decompressor: Self::fresh(no_context_takeover),
            lost: false,
        }
    }

    const fn fresh(no_context_takeover: bool) -> MessageDecompressor {
        if no_context_takeover {
            MessageDecompressor::shared()
        } else {
            MessageDecompressor::new(false)
        }
    }

    /// Whether the decompressor keeps history a fresh one would lack.
    pub(crate) fn holds_history(&self) -> bool {
        let d = &self.decompressor;
        !d.no_context_takeover() && d.holds_state()
    }

    /// Inflates the next piece of the current message's compressed payload
    /// into `dst`; at most `max_len` inflated bytes are accepted per message.
    pub(crate) fn inflate(
        &mut self,
        part: &[u8],
        max_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        if self.lost {
            return Err(ProtocolError::InvalidCompressedData);
        }
        self.decompressor
            .decompress_part(part, max_len, dst)
            .map_err(convert)
    }

    /// Ends the current message (RFC 7692 §7.2.2's appended tail).
    pub(crate) fn finish(
        &mut self,
        max_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        if self.lost {
            return Err(ProtocolError::InvalidCompressedData);
        }
        self.decompressor.finish(max_len, dst).map_err(convert)
    }
}

fn convert(e: InflateError) -> ProtocolError {
    match e {
        InflateError::TooLarge { max } => ProtocolError::MessageTooLarge { max },
        InflateError::Corrupt => ProtocolError::InvalidCompressedData,
    }
}
