//! `durable prune --older-than DURATION [--status S] [--workflow NAME]
//! [--components] [--dry-run]`.

use durable::clock::{now_ms, parse_duration_ms};
use durable::store::{Location, PruneFilter, RunStatus};

use crate::args::PruneArgs;
use crate::common::{chain, error, open_required, print_stdout};
use crate::exit::ExitCode;

/// Deletes (or counts) the finished runs the arguments select; prints
/// `{"runs": N, "dry_run": bool}` on stdout.
pub async fn prune(db: &Location, args: PruneArgs) -> ExitCode {
    let Some(age_ms) = parse_duration_ms(&args.older_than) else {
        error(format_args!(
            "--older-than {:?}: a whole number and a unit (ms, s, m, h, d), such as 30d or 12h",
            args.older_than
        ));
        return ExitCode::Usage;
    };
    let status = match args.status.as_deref() {
        None => None,
        Some(s) => match RunStatus::parse_name(s) {
            Some(st) if !st.is_open() => Some(st),
            _ => {
                error(format_args!(
                    "--status {s:?}: succeeded, failed or cancelled"
                ));
                return ExitCode::Usage;
            }
        },
    };
    let store = match open_required(db).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let filter = PruneFilter {
        status,
        workflow: args.workflow.clone(),
        ..PruneFilter::finished_before(now_ms().saturating_sub(age_ms))
    };
    let done = async {
        if args.dry_run {
            return Ok((store.prune_count(filter).await?, 0));
        }
        let runs = store.prune(filter).await?;
        let components = match args.components {
            true => store.prune_components().await?.len(),
            false => 0,
        };
        Ok::<_, durable::store::StoreError>((runs, components))
    }
    .await;
    store.close().await;
    match done {
        Ok((runs, components)) => {
            let mut out = serde_json::json!({ "runs": runs, "dry_run": args.dry_run });
            if args.components && !args.dry_run {
                out["components"] = components.into();
            }
            print_stdout(&out.to_string());
            ExitCode::Success
        }
        Err(e) => {
            error(chain(&e));
            ExitCode::of_store(&e)
        }
    }
}
