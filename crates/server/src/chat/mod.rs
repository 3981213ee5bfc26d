//! The chat protocol's server side, above the transport: each connection's [`session`]
//! (authentication, limits, what each client message does), the conversation [`actions`]
//! shared with the REST API, and the per-connection rate limit ([`bucket`]). Delivery of
//! committed messages to connections lives in the hub (`hub::chat`).

pub(crate) mod actions;
pub(crate) mod bucket;
pub(crate) mod files;
pub(crate) mod session;
