//! The admin API (HTTP + JSON) and the peer API, served on one listener:
//! `server` routes, `guard` checks Host, Origin, token and Content-Type,
//! `peer` answers other nodes, `views` and `error` are the wire types,
//! `reply` the response helpers, `kv` the operators' view of key-value data; `client` is what the CLI verbs use, and
//! `local` what a host leaves in its data dir for them. Routes and errors
//! are documented in `docs/admin-api.md`.

pub(crate) mod client;
mod error;
pub(crate) mod guard;
mod kv;
pub(crate) mod local;
mod peer;
mod reply;
mod server;
pub(crate) mod ui;
mod views;

pub(crate) use server::{AdminConfig, serve};
