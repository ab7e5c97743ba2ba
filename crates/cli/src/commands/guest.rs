//! `durable wit`, `durable new` and `durable build`: the guest author's
//! verbs, thin over `durable_kit`.

use durable_kit::{KitError, build, project::Project, scaffold, wit};

use crate::args::{BuildArgs, NewArgs, WitArgs};
use crate::common::{error, print_stdout};
use crate::exit::ExitCode;

/// `eprintln!` that does not panic when stderr is closed (`| true`): the
/// message is a courtesy, the exit code is what counts.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn fail(e: &KitError) -> ExitCode {
    error(e);
    match e {
        KitError::ToolFailed { .. } => ExitCode::RunFailed,
        KitError::Io { .. } => ExitCode::Failure,
        KitError::Usage(_) | KitError::Project(_) | KitError::MissingTool { .. } => ExitCode::Usage,
    }
}

/// `durable wit --out DIR`.
pub fn wit(args: WitArgs) -> ExitCode {
    match wit::write(&args.out) {
        Ok(files) => {
            say!(
                "wrote {}@{} and its deps to {} ({} files)",
                wit::PACKAGE,
                wit::VERSION,
                args.out.display(),
                files.len()
            );
            ExitCode::Success
        }
        Err(e) => fail(&e),
    }
}

/// `durable new NAME --lang L --template T`.
pub fn new(args: NewArgs) -> ExitCode {
    let Some(name) = args.name.file_name().and_then(|n| n.to_str()) else {
        error(format_args!(
            "{} cannot name a project",
            args.name.display()
        ));
        return ExitCode::Usage;
    };
    let parent = match args.name.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if let Err(e) = scaffold::create(&parent, name, args.lang, args.template) {
        return fail(&e);
    }
    let shown = args.name.display();
    let steps = scaffold::next_steps(name, args.lang, args.template);
    say!(
        "created {shown} ({} workflow, {} template); next:\n  cd {shown}\n{}",
        args.lang,
        args.template,
        steps
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    ExitCode::Success
}

/// `durable build [DIR]`.
pub fn build(args: BuildArgs) -> ExitCode {
    if let Ok(project) = Project::open(&args.dir) {
        say!("building {} ({})", project.name, project.lang);
    }
    match build::build(&args.dir) {
        Ok(built) => {
            say!("built with {}", built.tool);
            print_stdout(&built.component.display().to_string());
            ExitCode::Success
        }
        Err(e) => fail(&e),
    }
}
