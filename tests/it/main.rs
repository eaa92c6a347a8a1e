//! The integration test binary: one `mod` per area (ripgrep's layout).

mod api_cache;
mod browser;
mod cli;
mod component;
mod drivers;
mod examples;
mod files;
mod first_plugin;
mod hardware;
mod host;
mod httpd;
mod kit_rules;
mod metrics;
mod mqtt;
mod recycle;
mod reload;
mod sandbox;
mod support;
mod testkit;
mod web;
