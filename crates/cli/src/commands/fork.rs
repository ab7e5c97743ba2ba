//! `durable fork`: a new run with a run's history up to a step, driven from
//! there.

use durable::store::Location;

use durable::runner::Runtime;

use crate::args::ForkArgs;
use crate::common::{error, open, print_stdout};
use crate::driving::{abandoned, config, engine, interruptible, report_one, to_end};
use crate::exit::ExitCode;

/// `durable fork`.
pub(crate) async fn fork(db: &Location, args: ForkArgs) -> ExitCode {
    if !db.may_exist() {
        error(format_args!("there is no database at {}", db));
        return ExitCode::NotFound;
    }
    let config = match config(db, &args.drive, &args.faults, false) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match open(db, &args.drive).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let new_id = args
        .new_id
        .clone()
        .unwrap_or_else(|| format!("{}-fork-{}", args.id, durable::clock::now_ms()));
    let forked = match store.fork(&args.id, &args.from_step, &new_id).await {
        Ok(run) => run,
        Err(e) => {
            error(&e);
            store.close().await;
            return ExitCode::of_store(&e);
        }
    };
    eprintln!(
        "run {new_id}: forked from {} before step {}",
        args.id, args.from_step
    );
    if args.no_start {
        print_stdout(&forked.id);
        store.close().await;
        return ExitCode::Success;
    }
    let rt = match engine(&config) {
        Ok(engine) => Runtime::with_engine(engine, store.clone(), config),
        Err(code) => return code,
    };
    let work = async { to_end(&rt, &new_id, rt.resume(&new_id).await).await };
    let code = match interruptible(&rt, work).await {
        Some(result) => report_one(&new_id, result),
        None => abandoned(std::slice::from_ref(&new_id)),
    };
    drop(rt);
    store.close().await;
    code
}
