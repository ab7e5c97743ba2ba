//! Retention by workflow (a workflow's own, a default for the others) and
//! the pruning of components no run uses.

use std::sync::Arc;

use super::{Kind, fresh, new_run};
use crate::owner::Owner;
use crate::sql::args;
use crate::{PruneFilter, Store};

on_both!(retention_picks_runs_by_workflow_and_unused_components_go);

async fn retention_picks_runs_by_workflow_and_unused_components_go(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    for (id, workflow, digest) in [
        ("a1", "a", "da"),
        ("a2", "a", "da"),
        ("b1", "b", "db"),
        ("c1", "c", "dc"),
        ("c-open", "c", "dc"),
        ("s@20261207T000001Z", "s", "dc"),
        ("s@20261207T000002Z", "s", "dc"),
    ] {
        let mut new = new_run(id);
        new.workflow = workflow.into();
        new.component_digest = digest.into();
        new.component = Arc::new(digest.as_bytes().to_vec());
        store.create_run(new, &me).await.expect("create");
    }
    store
        .writer()
        .transact(|tx| {
            tx.exec(
                "test setup",
                "UPDATE runs SET status = 'succeeded', finished_at_ms = 1000 WHERE id <> 'c-open'",
                args![],
            )
        })
        .await
        .expect("setup");
    let ids = |store: Store| async move {
        let mut ids: Vec<String> = store
            .list(Default::default())
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.run.id)
            .collect();
        ids.sort();
        ids
    };

    // A workflow's own retention.
    let only_a = PruneFilter {
        workflow: Some("a".into()),
        ..PruneFilter::finished_before(2000)
    };
    assert_eq!(store.prune_count(only_a.clone()).await.expect("count"), 2);
    assert_eq!(store.prune(only_a).await.expect("prune"), 2);
    assert_eq!(
        ids(store.clone()).await,
        [
            "b1",
            "c-open",
            "c1",
            "s@20261207T000001Z",
            "s@20261207T000002Z"
        ]
    );
    // The default, for the workflows without their own (c here).
    let default = PruneFilter {
        except_workflows: vec!["a".into(), "c".into()],
        ..PruneFilter::finished_before(2000)
    };
    // b1 and the older tick of schedule s; its newest tick is kept (a
    // restarted server catches up from it).
    assert_eq!(store.prune(default).await.expect("prune"), 2);
    assert_eq!(
        ids(store.clone()).await,
        ["c-open", "c1", "s@20261207T000002Z"]
    );

    // Components: a's and b's have no runs now; c's has.
    let mut gone = store.prune_components().await.expect("prune components");
    gone.sort();
    assert_eq!(gone, ["da", "db"]);
    let left: Vec<String> = store
        .components()
        .await
        .expect("components")
        .into_iter()
        .map(|c| c.digest)
        .collect();
    assert_eq!(left, ["dc"]);
    // A start of a pruned component stores it again.
    let mut again = new_run("a3");
    again.workflow = "a".into();
    again.component_digest = "da".into();
    again.component = Arc::new(b"da".to_vec());
    store.create_run(again, &me).await.expect("create again");
    store.close().await;
}
