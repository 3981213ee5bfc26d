//! The chatgroup wire protocol: every WebSocket message ([`ClientMsg`], [`ServerMsg`]), every
//! REST body ([`rest`]), the error codes ([`ErrorCode`]) and the ids ([`UserId`],
//! [`ConversationId`], [`MessageId`], [`Seq`]), as serde types with no I/O. The server, the
//! tests and the load generator all speak through these, so they cannot drift apart.
//!
//! ```
//! use chatgroup_protocol::{ClientMsg, ConversationId};
//!
//! let msg = ClientMsg::parse(r#"{"type":"send","conversation":7,"localId":"a1","body":"hi"}"#)?;
//! let ClientMsg::Send { conversation, .. } = msg else { unreachable!() };
//! assert_eq!(conversation, ConversationId(7));
//! # Ok::<(), chatgroup_protocol::ParseError>(())
//! ```
//!
//! The full description, with an example of every message, is `docs/protocol.md`.

#![forbid(unsafe_code)]

pub mod chunk;
mod client;
mod error;
mod ids;
mod model;
pub mod rest;
mod server;
mod wire_util;

pub use client::{ClientMsg, ParseError, Ref, TypingState, MAX_ECHOED_REF};
pub use error::ErrorCode;
pub use ids::{ConversationId, MessageId, Seq, UserId};
pub use model::{
    ConversationInfo, ConversationKind, FileInfo, Markers, MemberPresence, MessageKind,
    MessageView, Millis, SystemEvent, UserInfo,
};
pub use server::ServerMsg;
