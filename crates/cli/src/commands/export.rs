//! `durable export [RUN_ID ... | --all] [--no-components]`: runs with their
//! whole history as JSON lines on stdout (the shape is in docs/export.md
//! and `transfer_format`).

use std::collections::HashSet;
use std::io::Write;

use durable::store::{Location, RunFilter};

use super::transfer_format::{component_line, header_line, run_line};
use crate::args::ExportArgs;
use crate::common::{chain, error, open_required};
use crate::exit::ExitCode;

/// Writes the header, then each run (after its component, once per
/// digest, unless `--no-components`).
pub async fn export(db: &Location, args: ExportArgs) -> ExitCode {
    let store = match open_required(db).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let code = async {
        let ids = match args.all {
            true => {
                // Oldest first: a parent before its children.
                let mut all = store
                    .list(RunFilter::default())
                    .await
                    .map_err(|e| store_error(&e))?;
                all.reverse();
                all.into_iter().map(|s| s.run.id).collect()
            }
            false => args.ids.clone(),
        };
        let mut out = std::io::stdout().lock();
        let mut write = |line: String| -> Result<(), ExitCode> {
            // A closed pipe (`| head`) ends the export quietly.
            writeln!(out, "{line}").map_err(|_| ExitCode::Success)
        };
        write(header_line())?;
        let mut written: HashSet<String> = HashSet::new();
        for id in ids {
            let run = store.export_run(&id).await.map_err(|e| store_error(&e))?;
            let digest = run.component_digest().unwrap_or_default().to_string();
            if !args.no_components && written.insert(digest.clone()) {
                let component = store
                    .export_component(&digest)
                    .await
                    .map_err(|e| store_error(&e))?;
                match component {
                    Some(c) => write(component_line(&c))?,
                    None => {
                        error(format_args!(
                            "run {id}: its component {digest} is not stored"
                        ));
                        return Err(ExitCode::Failure);
                    }
                }
            }
            write(run_line(&run))?;
        }
        let _ = out.flush();
        Ok(ExitCode::Success)
    }
    .await;
    store.close().await;
    code.unwrap_or_else(|c| c)
}

fn store_error(e: &durable::store::StoreError) -> ExitCode {
    error(chain(e));
    ExitCode::of_store(e)
}
