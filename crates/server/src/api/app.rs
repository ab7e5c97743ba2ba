//! The state every handler shares: the server's [`State`], the registered
//! workflows, and the API's own limits ([`App`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use durable::runner::Runtime;
use serde_json::Value;

use super::guard::Hosts;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct State {
    pub rt: Arc<Runtime>,
    pub dispatcher: Dispatcher,
    pub token: Option<String>,
    pub max_input_bytes: usize,
    pub max_body_bytes: usize,
    /// Registered workflows: from durable.toml, and over the API.
    pub workflows: Workflows,
    /// Set when the server stops: no new runs.
    pub stopping: Arc<AtomicBool>,
    /// What `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// The names requests may reach the server by (`guard.rs`).
    pub hosts: Hosts,
    /// Most long polls open at once.
    pub max_long_polls: usize,
    /// Most upload bodies read at once.
    pub max_uploads: usize,
}

/// A name runs can be started by.
#[derive(Clone, Debug)]
pub struct Registered {
    /// The component's digest (stored).
    pub digest: String,
    /// A cron schedule, from durable.toml.
    pub schedule: Option<String>,
    /// The input of scheduled runs.
    pub input: Option<Value>,
    /// The queue its runs are started in.
    pub queue: Option<String>,
    /// Registered in durable.toml: the API cannot re-point it.
    pub from_config: bool,
}

/// Registered workflows by name.
pub type Workflows = Arc<Mutex<std::collections::BTreeMap<String, Registered>>>;

/// The handlers' state: the server's [`State`] and what the API keeps
/// beside it.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) state: State,
    /// The workflow names components were stored with, by digest (read
    /// from the store once).
    pub(crate) names: Arc<Mutex<HashMap<String, String>>>,
    /// Upload bodies read at once (`--max-uploads`).
    pub(crate) uploads: Arc<tokio::sync::Semaphore>,
    /// Compiles at once: an upload costs a core for seconds.
    pub(crate) compiling: Arc<tokio::sync::Semaphore>,
    /// Long polls open at once (`--max-long-polls`).
    pub(crate) long_polls: Arc<tokio::sync::Semaphore>,
}
