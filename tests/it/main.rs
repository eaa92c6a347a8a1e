//! The integration test binary: one `mod` per area (ripgrep's layout).

mod api_cache;
mod browser;
mod cli;
mod drivers;
mod first_plugin;
mod hardware;
mod host;
mod httpd;
mod metrics;
mod mqtt;
mod recycle;
mod reload;
mod sandbox;
mod support;
mod web;
