//! Standard output and error of every command. Writing a result must never panic (`println!`
//! does, on a closed pipe or a full disk): an error writing standard output ends the command
//! with a message and status 1, except a reader that went away (`cfsctl dump | head -1`), which
//! ends it quietly with status 0, as cat(1) and the other standard tools do under SIGPIPE.

use std::io::Write;

/// Writing standard output failed; kept apart from every other I/O error so that only a
/// closed standard output (not, say, a broken pipe to skopeo) is treated as a normal end.
#[derive(Debug, thiserror::Error)]
#[error("writing to standard output")]
pub struct StdoutError(#[source] pub std::io::Error);

impl StdoutError {
    /// True when the reader of standard output is gone (EPIPE).
    fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes one line to standard output.
pub fn line(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(StdoutError)
}

/// Writes `v` as pretty-printed JSON, one document followed by a newline.
pub fn json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    line(format_args!("{text}"))?;
    Ok(())
}

/// Flushes standard output (the last line may still be buffered when the command returns).
pub fn flush() -> Result<(), StdoutError> {
    std::io::stdout().flush().map_err(StdoutError)
}

/// True when `e` is, or was caused by, a closed standard output.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StdoutError>()
            .is_some_and(StdoutError::is_closed_pipe)
    })
}

/// Writes a message to standard error; an error doing so is ignored (there is nowhere left to
/// report it, and the command's own status still tells the caller).
pub fn write_note(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `println!` that returns a `Result` (`StdoutError`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::output::write_note(format_args!($($arg)*))
    };
}

pub(crate) use {note, outln};
