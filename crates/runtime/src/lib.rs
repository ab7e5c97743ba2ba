//! # durable
//!
//! A durable-execution engine: workflows are WebAssembly components of the
//! world `durable:workflow/workflow` (see `wit/durable.wit`); the host runs
//! them so that every step's outcome is committed to SQLite before the
//! workflow sees it, and a crashed run resumes by replaying its history
//! without executing any committed step again.
//!
//! This crate is the runtime, the library an application embeds: the
//! [`compiler`] (wasmtime, the [`compile_cache`]), the [`sandbox`] (WASI
//! contexts, deny by default), the [`observer`] seam, and the [`runner`].
//! Start with [`runner::Runtime`]: it loads a component, claims a run in
//! the [`store::Store`] and drives it.
//!
//! The crates below it are re-exported under the names they had when they
//! were modules of this one: [`store`] (`durable-store`), [`http`]
//! (`durable-http`), and `durable-core`'s [`history`] (the pure rules of
//! step keys and divergence), [`names`], [`clock`], [`hash`] and [`json`].

pub mod compile_cache;
pub mod compiler;
pub mod observer;
pub mod runner;
pub mod sandbox;
pub mod settings;

pub use durable_core::{clock, errors, hash, history, json, names, tags, trace};
pub use durable_http as http;
pub use durable_store as store;
pub use durable_store::owner;
