//! `metis-flash`: a thin shell over the flash engine (`metis-engine`). It parses
//! flags, asks the operator (pickers, confirmations, setup's fingerprints), shows
//! the engine's events, and maps its typed errors to exit codes; the flow itself
//! lives in the engine.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod picker;
mod report;
mod setup;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use metis_engine::{EngineError, Exit};

use cli::{Cli, Command};

fn main() -> ExitCode {
    let matches = Cli::command().after_long_help(Exit::table()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let exit = match cli.command {
        None => commands::flash_node(cli.flash),
        Some(Command::Flash(args)) => commands::flash_node(args),
        #[cfg(any(debug_assertions, feature = "dev-write"))]
        Some(Command::Write(args)) => commands::write(args),
        Some(Command::Setup(args)) => setup::setup(args),
        Some(Command::List(args)) => commands::list(args),
        Some(Command::Pull(args)) => commands::pull(args),
        Some(Command::Cache { command, cache }) => commands::cache(command, cache),
        Some(Command::Trust(command)) => commands::trust(command),
        Some(Command::Devices { json }) => commands::devices(json),
        Some(Command::Probe { device }) => commands::probe(&device),
        Some(Command::Completions { shell }) => completions(shell),
    };
    exit.into()
}

/// `metis-flash completions SHELL`: the script on stdout. Generated into memory
/// first: clap_complete panics on a write error, and `| head` is not a failure.
fn completions(shell: clap_complete::Shell) -> Exit {
    use std::io::Write as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "metis-flash", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: writing the completion script: {e}");
            Exit::Failure
        }
        _ => Exit::Ok,
    }
}

/// Prints an engine error with its hint (and the JSON failure line with
/// `--json`); returns its exit code.
pub(crate) fn fail(e: &EngineError, json: bool) -> Exit {
    let code = e.exit();
    eprintln!("error: {e}");
    let hint = e.hint();
    if let Some(h) = &hint {
        eprintln!("  hint: {h}");
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": false,
                "error": e.to_string(),
                "hint": hint,
                "exit_code": code.code(),
                "nothing_written": e.nothing_written(),
            })
        );
    }
    code
}

/// [`fail`] for the flash commands: also says what became of the card.
pub(crate) fn fail_flash(e: &EngineError, json: bool) -> Exit {
    let code = fail(e, json);
    if e.nothing_written() && !e.to_string().contains("nothing was written") {
        eprintln!("nothing was written");
    }
    code
}

/// Prints a failure that has no engine kind (a `trust` or `cache` command) and
/// returns exit code 1.
pub(crate) fn fail_other(e: &anyhow::Error) -> Exit {
    eprintln!("error: {e:#}");
    Exit::Failure
}
