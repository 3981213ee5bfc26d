//! The store against real databases (SQLite files; PostgreSQL when `CHATGROUP_TEST_POSTGRES`
//! names a cluster): one binary, one module per area.

mod conversations;
mod durability;
mod failures;
mod files;
mod marks;
mod messages;
mod nodes;
mod support;
mod tokens;
mod users;
