//! Naming a failed call: the Python traceback in what the guest printed,
//! and which [`FailureKind`] a trap is, in the words a user needs.
//!
//! Pure: `runtime::instance` turns a wasmtime error and the instance's
//! capture pipes into [`Seen`] (our own terms, no wasmtime types), and
//! [`name`] decides. The rules are tested below as a table. Below both
//! `capabilities` (which raise a [`HostTrap`]) and `runtime` (which
//! classifies), so neither needs the other for it.

use std::fmt;

use crate::config::Limits;

/// Bytes of a plugin's stdout/stderr kept per call (Python tracebacks land
/// in stderr).
pub const OUTPUT_CAPTURE_BYTES: usize = 64 * 1024;

/// Why a call failed, in the words a user needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The call ran past its wall-clock deadline (or asked to wait past it).
    Timeout,
    /// The call used its whole fuel budget.
    OutOfFuel,
    /// Linear memory hit its limit.
    OutOfMemory,
    /// Python raised and did not catch an exception.
    PythonException,
    /// The plugin's source could not be loaded (a SyntaxError, an import
    /// of something it may not import, no entry point).
    Load,
    /// The plugin called an interface it is not granted.
    NotGranted,
    /// The call recursed past the stack limit.
    StackOverflow,
    /// Any other WebAssembly trap.
    Trap,
    /// The plugin returned something the host refuses (too large, invalid).
    BadResult,
    /// The call printed more than the capture cap.
    OutputFlood,
    /// Instantiation or a host-side error.
    Host,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::OutOfMemory => "out_of_memory",
            FailureKind::PythonException => "python_exception",
            FailureKind::Load => "load",
            FailureKind::NotGranted => "not_granted",
            FailureKind::StackOverflow => "stack_overflow",
            FailureKind::Trap => "trap",
            FailureKind::BadResult => "bad_result",
            FailureKind::OutputFlood => "output_flood",
            FailureKind::Host => "host_error",
        }
    }
}

/// A failed plugin call.
#[derive(Debug, Clone)]
pub struct PluginFailure {
    pub kind: FailureKind,
    /// One line: what happened.
    pub message: String,
    /// The Python traceback or other guest stderr, when there is one.
    pub detail: String,
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginFailure {}

/// A trap the host raises on purpose inside a host call (an ungranted
/// interface, a wait past the deadline); [`name`] keeps its kind.
#[derive(Debug)]
pub struct HostTrap {
    pub kind: FailureKind,
    pub message: String,
}

impl fmt::Display for HostTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostTrap {}

/// The WebAssembly traps the host tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trapped {
    /// The epoch deadline passed.
    Interrupt,
    OutOfFuel,
    StackOverflow,
    /// How CPython ends after an uncaught exception (or a MemoryError);
    /// the text is wasmtime's description, for when there is no traceback.
    Unreachable(String),
    /// Any other trap, with wasmtime's description.
    Other(String),
}

/// What the host saw of a failed call.
pub struct Seen<'a> {
    /// The host raised it on purpose: its kind and message stand.
    pub host_trap: Option<&'a HostTrap>,
    /// The trap, when the guest trapped.
    pub trap: Option<Trapped>,
    /// The error with its causes (`{:#}`), for errors that are no trap.
    pub error: &'a str,
    /// Everything the guest wrote to stderr.
    pub stderr: &'a str,
    /// A capture pipe (stdout or stderr) is (nearly) full.
    pub flooded: bool,
}

/// The Python traceback in a guest's stderr: from its first line to the
/// blank line (or the Rust panic note) componentize-py prints after it.
pub fn traceback(stderr: &str) -> Option<&str> {
    let start = stderr.find("Traceback (most recent call last)")?;
    let rest = &stderr[start..];
    let end = rest
        .find("\n\n")
        .or_else(|| rest.find("\nthread '"))
        .unwrap_or(rest.len());
    Some(rest[..end].trim_end())
}

/// The exception a traceback ends with (`ValueError: bad reading`): its
/// last line that is not blank, trimmed.
pub fn exception(traceback: &str) -> &str {
    traceback
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::trim)
        .unwrap_or("")
}

/// Names a failed call. Its detail is the traceback when there is one,
/// else everything the guest wrote to stderr.
pub fn name(seen: &Seen, limits: &Limits) -> PluginFailure {
    let traceback = traceback(seen.stderr);
    let detail = traceback.unwrap_or(seen.stderr).to_string();
    if let Some(trap) = seen.host_trap {
        return PluginFailure {
            kind: trap.kind,
            message: trap.message.clone(),
            detail,
        };
    }
    let last_line = traceback.map(exception).unwrap_or("");
    let error = seen.error;
    // A full capture pipe reads as a closed stdout in Python
    // (BrokenPipeError) or as a trap in the host: either way, a flood.
    let (kind, message) = match &seen.trap {
        _ if seen.flooded => (
            FailureKind::OutputFlood,
            format!(
                "output flood: the plugin printed more than {} KiB (stdout/stderr cap)",
                OUTPUT_CAPTURE_BYTES / 1024
            ),
        ),
        Some(Trapped::Interrupt) => (
            FailureKind::Timeout,
            format!(
                "timed out: the call ran past its {} ms deadline (limits.deadline_ms)",
                limits.deadline_ms
            ),
        ),
        Some(Trapped::OutOfFuel) => (
            FailureKind::OutOfFuel,
            format!(
                "out of fuel: the call used its whole budget of {} (limits.fuel)",
                limits.fuel
            ),
        ),
        Some(Trapped::StackOverflow) => (
            FailureKind::StackOverflow,
            "stack overflow: the call recursed too deep".to_string(),
        ),
        // When memory is gone CPython may not even manage a clean traceback
        // ("lost sys.stderr"), but it names the MemoryError somewhere.
        Some(Trapped::Unreachable(_))
            if last_line.starts_with("MemoryError")
                || seen.stderr.contains("type name: MemoryError") =>
        {
            (
                FailureKind::OutOfMemory,
                format!(
                    "out of memory: the plugin hit its {} MiB limit (limits.memory_mb)",
                    limits.memory_mb
                ),
            )
        }
        Some(Trapped::Unreachable(_)) if traceback.is_some() => (
            FailureKind::PythonException,
            format!("Python exception: {last_line}"),
        ),
        Some(Trapped::Unreachable(trap) | Trapped::Other(trap)) => {
            (FailureKind::Trap, format!("WebAssembly trap: {trap}"))
        }
        None if error.contains("write beyond capacity") => (
            FailureKind::OutputFlood,
            format!(
                "output flood: the call printed more than {} KiB (stdout/stderr cap)",
                OUTPUT_CAPTURE_BYTES / 1024
            ),
        ),
        None if error.contains("memory") && error.contains("limit") => {
            (FailureKind::OutOfMemory, format!("out of memory: {error}"))
        }
        None => (FailureKind::Host, error.to_string()),
    };
    PluginFailure {
        kind,
        message,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What componentize-py prints for an uncaught exception: the
    /// traceback, a blank line, then its own panic note.
    const VALUE_ERROR: &str = "some print output\n\
        Traceback (most recent call last):\n  \
        File \"dht22/app.py\", line 12, in poll\n    \
        raise ValueError(\"bad reading\")\n\
        ValueError: bad reading\n\
        \n\
        thread '<unnamed>' panicked at src/lib.rs:1:1:\nPython exception\n";

    fn limits() -> Limits {
        Limits {
            deadline_ms: 250,
            fuel: 1000,
            memory_mb: 32,
            ..Limits::default()
        }
    }

    fn seen<'a>(trap: Option<Trapped>, stderr: &'a str) -> Seen<'a> {
        Seen {
            host_trap: None,
            trap,
            error: "error while executing at wasm backtrace",
            stderr,
            flooded: false,
        }
    }

    #[test]
    fn the_traceback_runs_from_its_first_line_to_the_blank_line_after_it() {
        let cases: &[(&str, Option<&str>)] = &[
            (VALUE_ERROR, Some("Traceback (most recent call last):\n  File \"dht22/app.py\", line 12, in poll\n    raise ValueError(\"bad reading\")\nValueError: bad reading")),
            // No blank line: up to the panic note.
            (
                "Traceback (most recent call last):\nKeyError: 'x'\nthread 'main' panicked",
                Some("Traceback (most recent call last):\nKeyError: 'x'"),
            ),
            // Neither: to the end, trailing space cut.
            (
                "Traceback (most recent call last):\nKeyError: 'x'  \n",
                Some("Traceback (most recent call last):\nKeyError: 'x'"),
            ),
            ("just a print\n", None),
            ("", None),
        ];
        for (stderr, want) in cases {
            assert_eq!(traceback(stderr), *want, "{stderr:?}");
        }
    }

    #[test]
    fn the_exception_is_the_last_line_that_is_not_blank() {
        let cases = [
            (
                "Traceback (most recent call last):\nValueError: x",
                "ValueError: x",
            ),
            ("Traceback\n  ValueError: x  \n   \n", "ValueError: x"),
            ("   \n", ""),
            ("", ""),
        ];
        for (tb, want) in cases {
            assert_eq!(exception(tb), want, "{tb:?}");
        }
    }

    /// `(what the host saw, expected kind, expected start of the message)`.
    fn check(seen: Seen, kind: FailureKind, message: &str) {
        let failure = name(&seen, &limits());
        assert_eq!(failure.kind, kind, "{}", failure.message);
        assert!(
            failure.message.starts_with(message),
            "{:?} does not start with {message:?}",
            failure.message
        );
    }

    #[test]
    fn each_trap_is_named_with_the_limit_to_change() {
        use FailureKind as K;
        let unreachable = || Some(Trapped::Unreachable("wasm `unreachable` executed".into()));
        let cases: Vec<(Seen, FailureKind, &str)> = vec![
            (
                seen(Some(Trapped::Interrupt), ""),
                K::Timeout,
                "timed out: the call ran past its 250 ms deadline (limits.deadline_ms)",
            ),
            (
                seen(Some(Trapped::OutOfFuel), ""),
                K::OutOfFuel,
                "out of fuel: the call used its whole budget of 1000 (limits.fuel)",
            ),
            (
                seen(Some(Trapped::StackOverflow), ""),
                K::StackOverflow,
                "stack overflow",
            ),
            (
                seen(unreachable(), VALUE_ERROR),
                K::PythonException,
                "Python exception: ValueError: bad reading",
            ),
            (
                seen(
                    unreachable(),
                    "Traceback (most recent call last):\nMemoryError\n\n",
                ),
                K::OutOfMemory,
                "out of memory: the plugin hit its 32 MiB limit (limits.memory_mb)",
            ),
            // Out of memory before a clean traceback.
            (
                seen(
                    unreachable(),
                    "Fatal Python error: lost sys.stderr\ntype name: MemoryError\n",
                ),
                K::OutOfMemory,
                "out of memory:",
            ),
            // Unreachable without a traceback is a plain trap.
            (
                seen(unreachable(), "no traceback here"),
                K::Trap,
                "WebAssembly trap: wasm `unreachable` executed",
            ),
            (
                seen(Some(Trapped::Other("integer divide by zero".into())), ""),
                K::Trap,
                "WebAssembly trap: integer divide by zero",
            ),
        ];
        for (seen, kind, message) in cases {
            check(seen, kind, message);
        }
    }

    #[test]
    fn a_full_capture_pipe_is_a_flood_whatever_the_trap() {
        for trap in [
            None,
            Some(Trapped::Interrupt),
            Some(Trapped::Unreachable("x".into())),
        ] {
            let mut s = seen(trap, VALUE_ERROR);
            s.flooded = true;
            check(
                s,
                FailureKind::OutputFlood,
                "output flood: the plugin printed",
            );
        }
    }

    #[test]
    fn an_error_that_is_no_trap_is_named_from_its_text() {
        let cases = [
            (
                "failed to write: write beyond capacity",
                FailureKind::OutputFlood,
                "output flood: the call printed",
            ),
            (
                "memory index 0 has a limit of 33554432 bytes",
                FailureKind::OutOfMemory,
                "out of memory: memory index 0 has a limit",
            ),
            ("linking failed", FailureKind::Host, "linking failed"),
        ];
        for (error, kind, message) in cases {
            let mut s = seen(None, "");
            s.error = error;
            check(s, kind, message);
        }
    }

    #[test]
    fn a_host_trap_keeps_its_kind_and_message_over_everything_else() {
        let trap = HostTrap {
            kind: FailureKind::NotGranted,
            message: "plugin `p` called buzzer-controller".into(),
        };
        let mut s = seen(Some(Trapped::Interrupt), VALUE_ERROR);
        s.host_trap = Some(&trap);
        s.flooded = true;
        let failure = name(&s, &limits());
        assert_eq!(failure.kind, FailureKind::NotGranted);
        assert_eq!(failure.message, trap.message);
        assert!(failure.detail.ends_with("ValueError: bad reading"));
    }

    #[test]
    fn the_detail_is_the_traceback_when_there_is_one_else_all_of_stderr() {
        let with = name(
            &seen(Some(Trapped::Unreachable("u".into())), VALUE_ERROR),
            &limits(),
        );
        assert!(with
            .detail
            .starts_with("Traceback (most recent call last):"));
        assert!(!with.detail.contains("panicked"), "{}", with.detail);
        let without = name(&seen(Some(Trapped::Interrupt), "a print\n"), &limits());
        assert_eq!(without.detail, "a print\n");
    }
}
