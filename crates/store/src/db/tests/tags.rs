//! Tags: stored at a start and with a `set-tag` record, found by list and
//! count, shown, copied by a fork, pruned with their run.

use super::{Kind, fresh, new_run, only, step};
use crate::owner::Owner;
use crate::sql::args;
use crate::{PruneFilter, RunFilter, Store};

on_both!(tags_are_set_at_start_and_by_records_and_find_their_runs);

fn filter(tags: &[(&str, &str)]) -> RunFilter {
    RunFilter {
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RunFilter::default()
    }
}

async fn tags_are_set_at_start_and_by_records_and_find_their_runs(kind: Kind) {
    let db = fresh(kind).await;
    let store = Store::open(&db.location).await.expect("open");
    let me = Owner::current();
    for (id, customer) in [("a", "42"), ("b", "42"), ("c", "7")] {
        let mut new = new_run(id);
        new.tags.insert("customer".into(), customer.into());
        store.create_run(new, &me).await.expect("create");
    }
    store
        .create_run(new_run("untagged"), &me)
        .await
        .expect("create");
    // `set-tag` in run b: a record and its tag in one commit; a second
    // value of a key replaces the first.
    let mut commit = only(step("$tag:plan#1", 0));
    commit.tag = Some(("plan".into(), "pro".into()));
    store
        .commit_step("b", &me, 1, commit)
        .await
        .expect("commit");
    let mut commit = only(step("$tag:customer#1", 1));
    commit.tag = Some(("customer".into(), "43".into()));
    store
        .commit_step("c", &me, 1, commit)
        .await
        .expect("commit");

    let ids = |runs: Vec<crate::RunSummary>| {
        let mut ids: Vec<String> = runs.into_iter().map(|r| r.run.id).collect();
        ids.sort();
        ids
    };
    let found = |tags: &'static [(&str, &str)]| {
        let store = store.clone();
        async move { ids(store.list(filter(tags)).await.expect("list")) }
    };
    assert_eq!(found(&[("customer", "42")]).await, ["a", "b"]);
    assert_eq!(found(&[("customer", "42"), ("plan", "pro")]).await, ["b"]);
    assert_eq!(found(&[("customer", "7")]).await, Vec::<String>::new());
    assert_eq!(found(&[("customer", "43")]).await, ["c"]);
    assert_eq!(found(&[]).await.len(), 4);
    let counts = store
        .count_by_status(None, None, None, Some(("customer".into(), "42".into())))
        .await
        .expect("count");
    assert_eq!(counts, [("running".to_string(), 2)]);

    let shown = store.detail("b", false).await.expect("detail");
    assert_eq!(shown.tags.get("customer").map(String::as_str), Some("42"));
    assert_eq!(shown.tags.get("plan").map(String::as_str), Some("pro"));
    store.fork("b", "$tag:plan#1", "b2").await.expect("fork");
    assert_eq!(found(&[("plan", "pro")]).await, ["b", "b2"]);

    // Pruned with their run.
    store
        .writer()
        .transact(|tx| {
            tx.exec(
                "test setup",
                "UPDATE runs SET status = 'succeeded', finished_at_ms = 1000 WHERE id = 'a'",
                args![],
            )
        })
        .await
        .expect("setup");
    let pruned = store
        .prune(PruneFilter::finished_before(2000))
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    assert_eq!(found(&[("customer", "42")]).await, ["b", "b2"]);
    let left: i64 = store
        .read(|tx| {
            tx.one(
                "test",
                "SELECT count(*) FROM run_tags WHERE run_id = 'a'",
                args![],
                |r| r.get::<i64>(0),
            )
        })
        .await
        .expect("count");
    assert_eq!(left, 0);
    store.close().await;
}
