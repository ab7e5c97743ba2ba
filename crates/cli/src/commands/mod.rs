//! One module per verb. Each takes its parsed arguments and returns the
//! exit code; what verbs share is in `common` (messages, the database,
//! loading) and `driving` (how runs are driven and reported).

mod backup;
mod cancel;
mod check;
mod components;
mod event;
mod export;
mod fork;
mod guest;
mod import;
mod list;
mod prune;
mod resume;
mod run;
#[cfg(feature = "serve")]
mod serve;
mod show;
mod transfer_format;
mod upgrade;

use std::path::PathBuf;

use crate::args::{Cli, Command};
use durable::store::Location;

use crate::common::check_db;
use crate::exit::ExitCode;

/// Runs the parsed command line.
pub async fn main(cli: Cli) -> ExitCode {
    // The guest author's verbs touch no database.
    let command = match cli.command {
        Command::Wit(args) => return guest::wit(args),
        Command::New(args) => return guest::new(args),
        Command::Build(args) => return guest::build(args),
        command => command,
    };
    let db = cli.db.unwrap_or_else(|| PathBuf::from("durable.db"));
    if let Err(e) = check_db(&db) {
        eprintln!("durable: --db: {e}");
        return ExitCode::Usage;
    }
    let db = Location::parse(&db);
    match command {
        Command::Wit(_) | Command::New(_) | Command::Build(_) => unreachable!("handled above"),
        Command::Backup(args) => backup::backup(&db, args).await,
        Command::Prune(args) => prune::prune(&db, args).await,
        Command::Export(args) => export::export(&db, args).await,
        Command::Import(args) => import::import(&db, args).await,
        Command::Run(args) => run::run(&db, args).await,
        Command::Resume(args) => resume::resume(&db, args).await,
        Command::List(args) => list::list(&db, args).await,
        Command::Show(args) => show::show(&db, args).await,
        Command::Cancel(args) => cancel::cancel(&db, args).await,
        Command::Fork(args) => fork::fork(&db, args).await,
        Command::Event(args) => event::event(&db, args).await,
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::serve(&db, args).await,
        Command::Components(c) => components::components(&db, c).await,
        Command::Check(args) => check::check(args).await,
        Command::UpgradeCheck(args) => upgrade::upgrade_check(&db, args).await,
    }
}
