//! `metis-build man DIR` (hidden; scripts/release runs it): the man pages of
//! `metis-flash` and `metis-build`, one per command and subcommand
//! (`metis-flash-setup.1`, …), from the same clap definitions the binaries
//! parse with. Here rather than in the flasher, so that clap_mangen is never in
//! the binary operators download.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory as _;

#[path = "../../flasher/src/cli.rs"]
#[allow(dead_code, unexpected_cfgs)]
mod flash_cli;

/// Writes the pages into `dir`; the date is the build's (release/version.rs),
/// never the clock's, so the pages are reproducible.
pub fn write(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let flash = flash_cli::Cli::command().after_long_help(metis_engine::Exit::table());
    write_pages(&flash, "metis-flash", "metis-flash", dir)?;
    write_pages(
        &crate::cli::Cli::command(),
        "metis-build",
        "metis-build",
        dir,
    )
}

/// `name.1` for `cmd`, then `name-sub.1` for each subcommand but hidden ones,
/// `help` and the flasher's development-only `write`. `usage` is how the
/// command is typed (`metis-flash setup`).
fn write_pages(cmd: &clap::Command, name: &str, usage: &str, dir: &Path) -> Result<()> {
    let cmd = cmd
        .clone()
        .display_name(name.to_string())
        .bin_name(usage.to_string());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .date(env!("METIS_BUILD_DATE"))
        .source(concat!("Metis ", env!("CARGO_PKG_VERSION")))
        .manual("Metis")
        .render(&mut page)
        .with_context(|| format!("rendering {name}.1"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands() {
        let sub_name = sub.get_name();
        if sub.is_hide_set() || sub_name == "help" || sub_name == "write" {
            continue;
        }
        write_pages(
            sub,
            &format!("{name}-{sub_name}"),
            &format!("{usage} {sub_name}"),
            dir,
        )?;
    }
    Ok(())
}
