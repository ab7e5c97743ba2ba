//! `durable resume`: drive interrupted runs (all, or those named) to their
//! end; with `--component`, on another component.

use durable::store::Location;
use std::sync::Arc;

use durable::runner::{Finished, RunError, Runtime};

use crate::args::ResumeArgs;
use crate::common::{chain, error, load_links, open};
use crate::driving::{
    abandoned, config, engine, interruptible, report_line, report_one, resume_when_due,
};
use crate::exit::ExitCode;

/// `durable resume`.
pub(crate) async fn resume(db: &Location, args: ResumeArgs) -> ExitCode {
    if let Some(new) = args.component.clone() {
        return super::upgrade::resume_switching(db, args, &new).await;
    }
    if !db.may_exist() {
        // Opening would create an empty database; there is nothing to resume.
        error(format_args!(
            "there is no database at {}: nothing to resume",
            db
        ));
        return if args.ids.is_empty() {
            ExitCode::Success
        } else {
            ExitCode::NotFound
        };
    }
    let store = match open(db, &args.drive).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let single = args.ids.len() == 1;
    let rt = match config(db, &args.drive, &args.faults, !single).and_then(|c| {
        let engine = engine(&c)?;
        let links = load_links(&engine, &args.links)?;
        Ok((engine, c, links))
    }) {
        Ok((engine, config, links)) => {
            let rt = Runtime::with_engine(engine, store.clone(), config);
            for (name, linked) in &links {
                rt.link(name, linked);
            }
            rt
        }
        Err(code) => return code,
    };
    let ids = if args.ids.is_empty() {
        match store.unfinished_runs().await {
            Ok(runs) => {
                let mut ids = Vec::new();
                for run in runs {
                    match run.busy {
                        None => ids.push(run.id),
                        Some(b) => error(format_args!(
                            "skipping run {}: process {} on {} drives it (its lease runs {} s more)",
                            run.id,
                            b.pid,
                            b.host,
                            (b.lease_left_ms.max(0) as u64).div_ceil(1000)
                        )),
                    }
                }
                ids
            }
            Err(e) => {
                error(chain(&e));
                return ExitCode::of_store(&e);
            }
        }
    } else {
        args.ids.clone()
    };
    if ids.is_empty() {
        eprintln!("durable: no interrupted runs to resume");
    }
    let code = if single {
        let work = resume_when_due(&rt, &ids[0]);
        match interruptible(&rt, work).await {
            Some(result) => report_one(&ids[0], result),
            None => abandoned(&ids),
        }
    } else {
        // All runs at once: their steps share the host's step limit; runs
        // that wait are waited for, the due ones driven meanwhile.
        let rt = Arc::new(rt);
        let mut set = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let (rt, id) = (rt.clone(), id.clone());
            set.spawn(async move { (i, resume_when_due(&rt, &id).await) });
        }
        let mut results: Vec<Option<Result<Finished, RunError>>> =
            ids.iter().map(|_| None).collect();
        let joined_all = interruptible(&rt, async {
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, r)) => results[i] = Some(r),
                    Err(e) => error(format_args!("internal error: {e}")),
                }
            }
        })
        .await;
        if joined_all.is_none() {
            let left: Vec<String> = ids
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            drop(set);
            store.close().await;
            return abandoned(&left);
        }
        let mut worst = ExitCode::Success;
        for (id, result) in ids.iter().zip(results) {
            let code = match result {
                Some(r) => report_line(id, r),
                None => ExitCode::Failure,
            };
            worst = worst.max(code);
        }
        worst
    };
    store.close().await;
    code
}
