//! `durable run`: start a run of a component and drive it to its end.

use durable::store::Location;

use durable::runner::{Runtime, new_run_id};

use crate::args::RunArgs;
use crate::common::{error, load, load_links, open};
use crate::driving::{abandoned, config, engine, input_text, interruptible, report_one, to_end};
use crate::exit::ExitCode;

/// `durable run`.
pub(crate) async fn run(db: &Location, args: RunArgs) -> ExitCode {
    match run_inner(db, args).await {
        Ok(code) | Err(code) => code,
    }
}

async fn run_inner(db: &Location, args: RunArgs) -> Result<ExitCode, ExitCode> {
    if let Some(queue) = &args.queue {
        error(format_args!(
            "--queue {queue}: queues are a server's feature (`durable run` drives its run here, \
             at once); start the run on `durable serve` with POST /v1/runs \
             {{\"workflow\": ..., \"queue\": \"{queue}\"}}"
        ));
        return Err(ExitCode::Usage);
    }
    if let Some(id) = &args.id
        && let Err(e) = durable::runner::validate_run_id(id)
    {
        error(e);
        return Err(ExitCode::Usage);
    }
    let input = read_input(&args)?;
    let config = config(db, &args.drive, &args.faults, false)?;
    let engine = engine(&config)?;
    // Load before opening the database: a bad component changes nothing.
    let workflow = load(&engine, &args.component)?;
    let links = load_links(&engine, &args.links)?;
    let store = open(db, &args.drive).await?;
    let rt = Runtime::with_engine(engine, store.clone(), config);
    for (name, linked) in &links {
        rt.link(name, linked);
    }
    tracing::debug!(source = ?workflow.source, time = ?workflow.load_time, "component loaded");
    let run_id = args
        .id
        .clone()
        .unwrap_or_else(|| new_run_id(&workflow.name));
    if args.id.is_none() {
        eprintln!("run {run_id}");
    }
    let tags: durable::tags::Tags = args.tags.iter().cloned().collect();
    if let Err(e) = durable::tags::validate_start(&tags) {
        eprintln!("durable: --tag: {e}");
        return Err(ExitCode::Usage);
    }
    let work = async {
        let options = durable::store::StartOptions {
            tags: tags.clone(),
            trace_parent: None,
        };
        let started = rt.start_with(&workflow, &run_id, &input, &options).await;
        to_end(&rt, &run_id, started).await
    };
    let code = match interruptible(&rt, work).await {
        Some(result) => report_one(&run_id, result),
        None => abandoned(std::slice::from_ref(&run_id)),
    };
    drop(rt);
    store.close().await;
    Ok(code)
}

fn read_input(args: &RunArgs) -> Result<String, ExitCode> {
    input_text(
        args.input.as_deref(),
        args.input_file.as_deref(),
        args.drive.max_input_bytes,
    )
}
