//! The guest author's kit: what a workflow author outside this repository
//! needs from the `durable` binary alone.
//!
//! - [`wit`]: the WIT package the host implements, written out of the binary
//!   (`durable wit`);
//! - [`scaffold`]: a new project folder in Rust, Python or JavaScript from a
//!   template, with this binary's SDK vendored into it (`durable new`);
//! - [`build`]: builds a project folder into a component with the language's
//!   own tool, installing nothing (`durable build`);
//! - [`project`]: what a folder is (its language, name and component), for
//!   `durable run DIR`.
//!
//! The files it hands out are embedded at compile time from `wit/`,
//! `guest-sdk/` and `guest-examples/` (see `build.rs`), so what `durable new`
//! writes is exactly what this repository tests.

mod embedded;
mod error;
mod lang;

pub mod build;
pub mod project;
pub mod scaffold;
pub mod wit;

pub use error::KitError;
pub use lang::Lang;
