//! End-to-end tests of the chatgroup server over real sockets on 127.0.0.1.
//!
//! Every test starts its own server (in-process on an ephemeral port, or the built binary as a
//! subprocess for signal handling) with short timers, and bounds every wait.

mod support;

mod backpressure;
mod broadcast;
mod chat;
mod client_errors;
mod deflate;
mod garbage;
mod heartbeat;
mod http_surface;
mod interop;
mod limits;
mod repeated_headers;
mod shutdown;
