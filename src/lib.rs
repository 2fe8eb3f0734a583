//! jwt-guard: an Envoy HTTP filter (proxy-wasm) that verifies a bearer JWT and binds
//! the token's user to a segment of the request path.
//!
//! Every decision lives in plain modules that never touch the host: `extract` finds the
//! token, `token` decodes it, `keys` verifies its signature, `claims` checks what it
//! says, `cache` remembers verified tokens, `path` and `rules` decide what the path
//! needs, `guard` puts them together and `denial` renders refusals. `config` parses the
//! plugin configuration, `remote` holds the JWKS fetch state workers share, `json`
//! describes parse errors without echoing values, and `header_map` reads the headers as
//! Envoy serializes them. Only `filter` speaks to Envoy.

pub mod cache;
pub mod claims;
pub mod config;
pub mod denial;
pub mod extract;
pub mod guard;
pub mod header_map;
pub mod json;
pub mod keys;
pub mod path;
pub mod remote;
pub mod rules;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod filter;
