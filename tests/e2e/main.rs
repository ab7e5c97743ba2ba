//! End-to-end tests: real guests built for wasm32-wasip2, driven by the real
//! `durable` binary in child processes, killed for real.
//!
//! One test binary (wasmtime links slowly); one module per area.

mod util;

mod bench;
mod check;
mod cli;
mod compat;
mod crash;
mod export;
mod family;
mod guarantees;
mod hardening;
mod http;
mod kit;
mod limits;
mod operate;
mod polyglot;
mod postgres;
mod postgres_hosts;
mod queues;
mod replay;
mod retention;
mod sandbox;
mod serve;
mod server;
mod stub;
mod tags;
mod torture;
mod tracing;
mod ui;
mod ui_attack;
mod upgrade;
mod waits;
