//! `wasi-python-host`: the command line is [`wasi_python_host::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    wasi_python_host::cli::main(std::env::args().skip(1))
}
