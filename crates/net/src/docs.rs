//! Shell completions and man pages, generated from a binary's clap
//! definition (so they never drift from `--help`): every binary has
//! `completions <SHELL>` and `man [--out DIR]`.

use std::io::Write;
use std::path::Path;

pub use clap_complete::Shell;

/// Writes the completion script for `shell` to `out`.
pub fn completions(mut cmd: clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// The man page of `cmd` (section 1), as roff.
pub fn man_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    Ok(buf)
}

/// Writes `NAME.1` and one `NAME-SUB.1` per subcommand (nested ones too)
/// into `dir`; returns the files written.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    write_tree(&cmd, cmd.get_name(), dir, &mut written)?;
    Ok(written)
}

fn write_tree(cmd: &clap::Command, name: &str, dir: &Path, written: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let page = cmd.clone().name(name.to_owned());
    let p = dir.join(format!("{name}.1"));
    std::fs::write(&p, man_page(&page)?)?;
    written.push(p);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_tree(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
