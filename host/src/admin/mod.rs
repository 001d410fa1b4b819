//! The admin API (HTTP + JSON): the server a host runs, and the client the
//! CLI verbs use. Routes and errors are documented in `docs/admin-api.md`.

pub(crate) mod client;
pub(crate) mod server;
