//! The admin API (HTTP + JSON) and the peer API, served on one listener:
//! `server` routes and checks the token, `peer` answers other nodes,
//! `views` and `error` are the wire types, `reply` the response helpers;
//! `client` is what the CLI verbs use. Routes and errors are documented in
//! `docs/admin-api.md`.

pub(crate) mod client;
mod error;
mod peer;
mod reply;
mod server;
mod views;

pub(crate) use server::{AdminConfig, serve};
