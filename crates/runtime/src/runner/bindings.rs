//! Host bindings generated from `wit/durable.wit` (`durable:workflow@0.2.0`)
//! and from the frozen `wit/v0.1.0/durable.wit`, so that components built
//! against either run. Version 0.1.0's types are 0.2.0's (0.2.0 only adds
//! to them), so both versions' host functions share one implementation.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "workflow",
    path: "../../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    // Steps' HTTP (the world imports wasi:http/outgoing-handler) is
    // implemented by wasmtime-wasi-http and linked in `engine`.
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

/// The bindings of `durable:workflow@0.1.0`.
pub mod v1 {
    wasmtime::component::bindgen!({
        world: "workflow",
        path: "../../wit/v0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "durable:workflow/types@0.1.0": super::durable::workflow::types,
        },
    });
}

pub use self::durable::workflow::types::{
    Call, ChildOptions, HandleError, LogLevel, RetryPolicy, StepError, StepOptions, WaitError,
};
