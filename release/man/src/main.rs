//! `metis-man DIR`: writes the man pages of `metis-flash` and `metis-build`
//! (section 1, one page per command and subcommand, `metis-flash-setup.1` …)
//! into DIR, from the same clap definitions the binaries parse with.
#![forbid(unsafe_code)]

use std::path::Path;

use clap::CommandFactory as _;

#[path = "../../../flasher/src/cli.rs"]
#[allow(dead_code)]
mod flash_cli;

#[path = "../../../builder/src/cli.rs"]
#[allow(dead_code)]
mod build_cli;

/// Writes `name.1` for `cmd` and, recursively, `name-sub.1` for each visible
/// subcommand. Hidden and development-only commands get no page.
/// `usage` is how the command is typed (`metis-flash setup`).
fn write_pages(cmd: &clap::Command, name: &str, usage: &str, dir: &Path) -> std::io::Result<()> {
    let cmd = cmd
        .clone()
        .display_name(name.to_string())
        .bin_name(usage.to_string());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .date(env!("METIS_BUILD_DATE"))
        .source(concat!("Metis ", env!("CARGO_PKG_VERSION")))
        .manual("Metis")
        .render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" || sub.get_name() == "write" {
            continue;
        }
        let sub_name = sub.get_name();
        write_pages(
            sub,
            &format!("{name}-{sub_name}"),
            &format!("{usage} {sub_name}"),
            dir,
        )?;
    }
    Ok(())
}

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: metis-man DIR");
        std::process::exit(2);
    };
    let dir = Path::new(&dir);
    let flash = flash_cli::Cli::command().after_long_help(metis_engine::Exit::table());
    let build = build_cli::Cli::command();
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| write_pages(&flash, "metis-flash", "metis-flash", dir))
        .and_then(|()| write_pages(&build, "metis-build", "metis-build", dir));
    if let Err(e) = result {
        eprintln!("error: writing man pages into {}: {e}", dir.display());
        std::process::exit(1);
    }
}
