//! `durable import FILE`: loads what `durable export` wrote into this
//! database, a run per transaction; runs it has already are skipped, so an
//! import stopped half way is finished by running it again.

use std::io::BufRead;

use durable::store::transfer::Imported;
use durable::store::{Location, Store};

use super::transfer_format::{Line, parse};
use crate::args::ImportArgs;
use crate::common::{chain, error, print_stdout};
use crate::exit::ExitCode;

/// Prints `{"runs": N, "existing": N, "components": N}` on stdout.
pub async fn import(db: &Location, args: ImportArgs) -> ExitCode {
    let reader: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                error(format_args!("{}: {e}", args.file.display()));
                return ExitCode::Usage;
            }
        }
    };
    let store = match Store::open(db.clone()).await {
        Ok(s) => s,
        Err(e) => {
            error(chain(&e));
            return ExitCode::of_store(&e);
        }
    };
    let (mut runs, mut existing, mut components) = (0u64, 0u64, 0u64);
    let mut code = ExitCode::Success;
    for (n, line) in reader.lines().enumerate() {
        let at = format!("{} line {}", args.file.display(), n + 1);
        let line = match line {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => l,
            Err(e) => {
                error(format_args!("{at}: {e}"));
                code = ExitCode::Usage;
                break;
            }
        };
        let done = match parse(&line) {
            Err(e) => {
                error(format_args!("{at}: {e}"));
                code = ExitCode::Usage;
                break;
            }
            Ok(Line::Header) => Ok(()),
            Ok(Line::Component(c)) => store.import_component(c).await.map(|()| components += 1),
            Ok(Line::Run(run)) => store.import_run(*run).await.map(|i| match i {
                Imported::Created => runs += 1,
                Imported::Exists => existing += 1,
            }),
        };
        if let Err(e) = done {
            error(format_args!("{at}: {}", chain(&e)));
            code = match e {
                durable::store::StoreError::Import(_) => ExitCode::Usage,
                e => ExitCode::of_store(&e),
            };
            break;
        }
    }
    store.close().await;
    print_stdout(
        &serde_json::json!({"runs": runs, "existing": existing, "components": components})
            .to_string(),
    );
    code
}
