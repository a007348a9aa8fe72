//! djauth: Django's authentication stack, byte for byte, in Rust.
//!
//! * [`formats`] — pure, I/O-free Django formats: signing, password hashers, session blobs,
//!   reset tokens, CSRF tokens. Everything there is a function of its inputs (plus the clock
//!   and the CSPRNG), so it can be read and tested alone.
//! * [`config`] — [`config::Settings`], Django's setting names with Django's defaults.
//! * [`db`] — Django's tables (and djauth's) through diesel; [`auth`] — `get_user`/`login`.
//! * [`web`] — the server on actix-web, and extractors for other actix-web apps.
//! * [`audit`] — audit events: tracing, an append-only table, a webhook.
//! * [`cli`] — the `djauth` command line.
//!
//! Everything but [`formats`] needs the `server` feature (on by default); `default-features =
//! false` builds the formats core alone, with none of the server's dependencies (`fuzz/` does).

#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod db;
pub mod formats;
#[cfg(feature = "server")]
pub mod web;
