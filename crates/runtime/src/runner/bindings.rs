//! Host bindings generated from `wit/durable.wit`.

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

pub use self::durable::workflow::types::{
    Call, LogLevel, RetryPolicy, StepError, StepOptions, WaitError,
};
