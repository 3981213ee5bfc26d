//! The chat core end to end (issue 8 §7): accounts and tokens, conversations, ACKed sends in
//! one gap-free order, sync and history, authorization on every action, limits, and
//! durability across a SIGKILL and a restart. Every test drives its own server on its own
//! data directory, over real sockets, as a user's client would.

mod client;

mod accounts;
mod authz;
mod cluster;
mod conversations;
mod durability;
mod files;
mod http_send;
mod messaging;
mod presence;
mod receipts;
mod regressions;
mod sync;
