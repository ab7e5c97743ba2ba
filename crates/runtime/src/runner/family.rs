//! Child workflows as a runtime sees them: which component runs a child of
//! a given workflow name, who drives the children its drives start, and
//! whether a child is being driven in this process (then a parent awaiting
//! it waits here, holding its instance, instead of parking and being
//! replayed when the child ends).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc, watch};

/// A component a child workflow can run: what creating its run needs.
#[derive(Clone)]
pub struct ChildComponent {
    /// The workflow name the child's run gets.
    pub workflow: String,
    /// SHA-256 of the component.
    pub digest: String,
    /// The component's bytes (stored with the run, once per digest).
    pub bytes: Arc<Vec<u8>>,
}

/// The children of this runtime's drives: see the module docs.
pub(crate) struct Family {
    /// Components by workflow name (`--link`, a server's registered
    /// workflows).
    links: Mutex<HashMap<String, ChildComponent>>,
    /// Whether only linked names may be started (a server); otherwise an
    /// unlinked name runs the parent's own component (`durable run`).
    links_only: bool,
    starts: mpsc::UnboundedSender<String>,
    /// Taken by whoever drives the children ([`super::Runtime::child_starts`]).
    receiver: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Children handed to that driver and not taken up yet.
    handed: Mutex<HashSet<String>>,
    /// The runs this process drives right now (the runtime's registry).
    active: Arc<Mutex<HashSet<String>>>,
    /// The runtime's workflow slots: a child handed over but not driven yet
    /// waits for one.
    workflow_slots: Arc<Semaphore>,
    /// Bumped whenever a drive of this runtime starts or ends.
    changes: watch::Sender<u64>,
}

impl Family {
    pub(crate) fn new(
        active: Arc<Mutex<HashSet<String>>>,
        workflow_slots: Arc<Semaphore>,
        links_only: bool,
    ) -> Family {
        let (starts, receiver) = mpsc::unbounded_channel();
        Family {
            links: Mutex::new(HashMap::new()),
            links_only,
            starts,
            receiver: Mutex::new(Some(receiver)),
            handed: Mutex::new(HashSet::new()),
            active,
            workflow_slots,
            changes: watch::Sender::new(0),
        }
    }

    /// Makes `component` the one that runs children named `name`.
    pub(crate) fn link(&self, name: &str, component: ChildComponent) {
        if let Ok(mut links) = self.links.lock() {
            links.insert(name.to_string(), component);
        }
    }

    /// The component that runs a child named `workflow` of a run of `own`.
    pub(crate) fn resolve(
        &self,
        workflow: &str,
        own: &ChildComponent,
    ) -> Result<ChildComponent, String> {
        if let Some(c) = self
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(workflow).cloned())
        {
            return Ok(c);
        }
        if self.links_only {
            return Err(format!(
                "no workflow named {workflow:?} is registered on this server, so no child of it can start"
            ));
        }
        Ok(ChildComponent {
            workflow: workflow.to_string(),
            ..own.clone()
        })
    }

    /// The receiver of the ids of children to drive; `None` once taken.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.receiver.lock().ok().and_then(|mut r| r.take())
    }

    /// Hands child `id` (open) to whoever drives children, if anyone does.
    pub(crate) fn hand_over(&self, id: &str) {
        let listening = self.receiver.lock().is_ok_and(|r| r.is_none());
        if listening && self.starts.send(id.to_string()).is_ok() {
            if let Ok(mut handed) = self.handed.lock() {
                handed.insert(id.to_string());
            }
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// A drive of `id` starts in this process.
    pub(crate) fn drive_started(&self, id: &str) {
        if let Ok(mut handed) = self.handed.lock() {
            handed.remove(id);
        }
    }

    /// A drive of this process ended (the run ended or parked).
    pub(crate) fn drive_ended(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Whether this process drives child `id` now, or will soon: handed
    /// over while a workflow slot is free. With every slot taken, a parent
    /// waiting here on children that wait for a slot would hold one of
    /// theirs: it parks instead (and gives its slot up).
    pub(crate) fn is_local(&self, id: &str) -> bool {
        self.active.lock().is_ok_and(|a| a.contains(id))
            || (self.workflow_slots.available_permits() > 0
                && self.handed.lock().is_ok_and(|h| h.contains(id)))
    }

    /// Forgets child `id` as handed over (its driver will not take it up).
    pub(crate) fn not_driven(&self, id: &str) {
        if let Ok(mut handed) = self.handed.lock() {
            handed.remove(id);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// Changes of the drives of this process, to wait on.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
