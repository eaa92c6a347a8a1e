//! The integration test binary: one `mod` per area (ripgrep's layout).

mod cli;
mod drivers;
mod first_plugin;
mod hardware;
mod host;
mod httpd;
mod mqtt;
mod recycle;
mod reload;
mod sandbox;
mod support;
