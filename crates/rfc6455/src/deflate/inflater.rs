//! The receive side's decompression state, as the message assembler holds it.

use bytes::{Bytes, BytesMut};

use super::compress::{InflateError, MessageDecompressor};
use super::negotiate::DeflateParams;
use crate::config::Role;
use crate::error::ProtocolError;

/// A [`MessageDecompressor`] created on the first compressed message, so a
/// connection that negotiated deflate but never receives a compressed message
/// pays nothing for inflate state.
#[derive(Debug)]
pub(crate) struct Inflater {
    no_context_takeover: bool,
    state: State,
}

#[derive(Debug)]
enum State {
    /// No history to keep: the next message starts from empty state.
    Fresh,
    Ready(MessageDecompressor),
    /// A clone of an inflater that held history from earlier messages. flate2
    /// cannot copy that history, and inflating without it can silently
    /// produce wrong bytes, so every further compressed message is refused.
    Lost,
}

impl Clone for Inflater {
    fn clone(&self) -> Self {
        let state = match self.state {
            State::Fresh => State::Fresh,
            State::Ready(_) if self.no_context_takeover => State::Fresh,
            State::Ready(_) | State::Lost => State::Lost,
        };
        Self {
            no_context_takeover: self.no_context_takeover,
            state,
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
            no_context_takeover,
            state: State::Fresh,
        }
    }

    /// Inflates one whole message's compressed payload; at most `max_len`
    /// inflated bytes are accepted.
    pub(crate) fn inflate(
        &mut self,
        payload: &[u8],
        max_len: usize,
    ) -> Result<Bytes, ProtocolError> {
        if matches!(self.state, State::Fresh) {
            self.state = State::Ready(MessageDecompressor::new(self.no_context_takeover));
        }
        let State::Ready(decompressor) = &mut self.state else {
            return Err(ProtocolError::InvalidCompressedData);
        };
        let mut out = BytesMut::new();
        decompressor
            .decompress(payload, max_len, &mut out)
            .map_err(|e| match e {
                InflateError::TooLarge { max } => ProtocolError::MessageTooLarge { max },
                _ => ProtocolError::InvalidCompressedData,
            })?;
        Ok(out.freeze())
    }
}
