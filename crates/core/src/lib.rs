//! # durable-core
//!
//! What every part of durable speaks: the pure rules of step keys and
//! divergence ([`history`]), the records a store keeps and the views it
//! answers with ([`records`], [`views`]), which names and run ids are
//! accepted ([`names`]), the clock ([`clock`]) and digests ([`hash`]).
//!
//! **Invariant:** no IO (the clock aside), no database, no wasmtime: the
//! store, the runtime, the server and the CLI all depend on this crate, and
//! it on none of them.

pub mod clock;
pub mod errors;
pub mod hash;
pub mod history;
pub mod json;
pub mod names;
pub mod queues;
pub mod records;
pub mod tags;
pub mod trace;
pub mod views;

pub use clock::now_ms;
pub use hash::sha256_hex;
pub use json::same_json;
