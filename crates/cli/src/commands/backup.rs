//! `durable backup PATH`: an online, synced copy of a SQLite database.

use durable::store::Location;

use crate::args::BackupArgs;
use crate::common::{chain, error, open_required};
use crate::exit::ExitCode;

/// Copies the database to `args.dest`.
pub async fn backup(db: &Location, args: BackupArgs) -> ExitCode {
    let store = match open_required(db).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let copied = store.backup_to(&args.dest).await;
    store.close().await;
    match copied {
        Ok(()) => {
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("backed up {db} to {}\n", args.dest.display()),
            );
            ExitCode::Success
        }
        Err(e) => {
            error(chain(&e));
            ExitCode::of_store(&e)
        }
    }
}
