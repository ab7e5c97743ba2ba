//! # durable
//!
//! A durable-execution engine: workflows are WebAssembly components of the
//! world `durable:workflow/workflow` (see `wit/durable.wit`); the host runs
//! them so that every step's outcome is committed to SQLite before the
//! workflow sees it, and a crashed run resumes by replaying its history
//! without executing any committed step again.
//!
//! Start with [`runner::Runtime`]: it loads a component, claims a run in
//! the [`store::Store`] and drives it. [`history`] holds the pure rules of
//! step keys and divergence.

#![warn(missing_docs)]

pub mod compile_cache;
pub mod engine;
pub mod observer;
pub mod runner;
pub mod sandbox;

pub use durable_core::{clock, hash, history, json, names};
pub use durable_http as http;
pub use durable_store as store;
pub use durable_store::owner;
