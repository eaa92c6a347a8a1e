//! The integration test binary: one `mod` per area (ripgrep's layout).

mod cli;
mod drivers;
mod hardware;
mod host;
mod recycle;
mod reload;
mod sandbox;
mod support;
