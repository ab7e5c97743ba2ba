//! Host bindings generated from `wit/durable.wit`.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "workflow",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::durable::workflow::types::{
    Call, LogLevel, RetryPolicy, StepError, StepOptions, WaitError,
};
