//! Server frames encoded once into shareable `Bytes` (server frames are never masked, so one
//! encoding serves every recipient).

use bytes::Bytes;
use chatgroup_protocol::ServerMsg;
use rfc6455::{CloseCode, CloseFrame, Frame};

/// Encodes a frame for sending by the server.
pub(crate) fn encode(frame: &Frame) -> Bytes {
    frame.to_bytes()
}

/// A Close frame with a status code and a short reason.
pub(crate) fn close(code: CloseCode, reason: &str) -> Bytes {
    encode(&Frame::close(Some(&CloseFrame::new(code, reason))))
}

/// The protocol ping the hub sends to every connection each ping interval.
pub(crate) fn ping() -> Bytes {
    encode(&Frame::ping(Bytes::new()))
}

/// The text reply to an application-level `ping` heartbeat.
pub(crate) fn pong_text() -> Bytes {
    encode(&Frame::text("pong"))
}

/// A chat message as a text frame, encoded once and shared by every recipient.
pub(crate) fn json(msg: &ServerMsg) -> Bytes {
    encode(&Frame::text(msg.to_json()))
}
