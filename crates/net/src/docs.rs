//! Shell completions and man pages, generated from a binary's clap
//! definition (so they never drift from `--help`): every binary has
//! `completions <SHELL>` and `man [--out DIR]`.

use std::io::Write;
use std::path::Path;

pub use clap_complete::Shell;

/// The `completions` and `man` subcommands every binary has; flatten it
/// into a binary's command enum (`#[command(flatten)] Docs(DocsCmd)`).
#[derive(clap::Subcommand, Debug)]
pub enum DocsCmd {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    /// generated from this command-line definition.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page, or with --out write one per subcommand (NAME.1,
    /// NAME-SUB.1) into a directory, generated from this command-line
    /// definition.
    Man {
        /// Directory to write the pages into.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

impl DocsCmd {
    /// Runs it for the binary whose definition is `cmd`.
    pub fn run(self, cmd: clap::Command, prog: &str) -> std::process::ExitCode {
        match self {
            DocsCmd::Completions { shell } => {
                completions(cmd, shell, &mut std::io::stdout());
                std::process::ExitCode::SUCCESS
            }
            DocsCmd::Man { out } => man_command(cmd, out.as_deref(), prog),
        }
    }
}

/// Parses the command line. Help and version print and exit 0; every
/// other clap error is a usage error (64), not clap's default 2 (which
/// means "not found" in Signpost's exit codes).
pub fn parse_args<T: clap::Parser>() -> Result<T, std::process::ExitCode> {
    T::try_parse().map_err(|e| {
        let _ = e.print();
        let help = matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion);
        std::process::ExitCode::from(crate::exit::clap_code(help))
    })
}

/// The `man [--out DIR]` command: the main page on stdout, or every page
/// into `out` (one line per file written). Failures name `prog`.
pub fn man_command(cmd: clap::Command, out: Option<&Path>, prog: &str) -> std::process::ExitCode {
    let written = match out {
        Some(dir) => write_man_pages(cmd, dir).map(|files| {
            for f in files {
                println!("wrote {}", f.display());
            }
        }).map_err(|e| format!("{}: {e}", dir.display())),
        None => man_page(&cmd).and_then(|p| std::io::stdout().write_all(&p)).map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prog}: {e}");
            std::process::ExitCode::from(crate::exit::INTERNAL)
        }
    }
}

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
