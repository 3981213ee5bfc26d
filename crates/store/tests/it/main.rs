//! The store against real database files: one binary, one module per area.

mod conversations;
mod durability;
mod failures;
mod files;
mod marks;
mod messages;
mod support;
mod tokens;
mod users;
