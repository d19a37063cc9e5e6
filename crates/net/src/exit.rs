//! The exit codes every Signpost binary uses (BSD `sysexits.h` where one
//! fits), and the table each binary prints at the end of its `--help`.

/// Success.
pub const OK: u8 = 0;
/// `lookup`: the identifier is not discoverable (LoST `notFound`).
pub const NOT_FOUND: u8 = 2;
/// Usage or configuration error: a bad flag or argument, a config file or
/// a key/certificate that cannot be used (`EX_USAGE`).
pub const USAGE: u8 = 64;
/// Bad input data: a table, import file or answer that is malformed,
/// refused or fails verification (`EX_DATAERR`).
pub const DATA: u8 = 65;
/// A service is unavailable: the resolver or an upstream cannot be
/// reached or answers with a server error (`EX_UNAVAILABLE`).
pub const UNAVAILABLE: u8 = 69;
/// An internal error: something that should not happen, or an I/O failure
/// writing output (`EX_SOFTWARE`).
pub const INTERNAL: u8 = 70;

/// The table, for clap's `after_help`.
pub const HELP: &str = "\
Exit codes (the same for every Signpost binary):
  0   ok
  2   not found (lookup: the identifier is not discoverable)
  64  usage or configuration error (bad flag, argument, config, key or certificate)
  65  bad data (malformed or refused table, import file or answer; verification failed)
  69  unavailable (cannot bind a listener; the resolver or an upstream cannot be reached or answered serverError)
  70  internal error (including failing to write output)";

/// What clap's error should exit with: help and version are not errors
/// (0); everything else is a usage error (64), never clap's default 2,
/// which means "not found" here.
pub fn clap_code(kind_is_help_or_version: bool) -> u8 {
    if kind_is_help_or_version { OK } else { USAGE }
}
