//! A run's steps as a tree: children under their parent in call order,
//! with failed attempts, the event each consumed and (if asked) output.

use std::collections::HashMap;

use durable_core::views::RunDetail;

use crate::ShownStep;

/// The tree of `detail`'s steps (children in call order), with attempts and,
/// if `with_output`, guest output attached.
pub fn build(detail: &RunDetail, with_output: bool) -> Vec<ShownStep> {
    let mut attempts: HashMap<&str, Vec<crate::ShownAttempt>> = HashMap::new();
    for a in &detail.attempts {
        attempts
            .entry(a.key.as_str())
            .or_default()
            .push(crate::attempt(a));
    }
    let mut output: HashMap<&str, Vec<crate::ShownLine>> = HashMap::new();
    for l in &detail.output {
        output
            .entry(l.key.as_str())
            .or_default()
            .push(crate::line(l));
    }
    let mut children: HashMap<&str, Vec<&durable_core::records::StepRecord>> = HashMap::new();
    for s in &detail.steps {
        children.entry(s.parent.as_str()).or_default().push(s);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.position);
    }
    fn node(
        key: &str,
        detail: &RunDetail,
        children: &HashMap<&str, Vec<&durable_core::records::StepRecord>>,
        attempts: &mut HashMap<&str, Vec<crate::ShownAttempt>>,
        output: &mut HashMap<&str, Vec<crate::ShownLine>>,
        with_output: bool,
    ) -> Vec<ShownStep> {
        let Some(list) = children.get(key) else {
            return Vec::new();
        };
        list.iter()
            .map(|s| {
                let mut n = crate::step_node(s, &detail.run);
                n.event = detail
                    .events
                    .iter()
                    .find(|e| e.consumed_by.as_deref() == Some(s.key.as_str()))
                    .map(crate::ShownEvent::new);
                n.failed_attempts = attempts.remove(s.key.as_str()).unwrap_or_default();
                if with_output {
                    n.output = Some(output.remove(s.key.as_str()).unwrap_or_default());
                }
                n.children = node(&s.key, detail, children, attempts, output, with_output);
                n
            })
            .collect()
    }
    node(
        "",
        detail,
        &children,
        &mut attempts,
        &mut output,
        with_output,
    )
}
