//! wasi-python-host: runs Python plugins compiled to WebAssembly components
//! on a Raspberry Pi, each with only the hardware it was granted.
//!
//! See ARCHITECTURE.md for the map and `layers.rs` for which module may use
//! which; `app` wires the threads together, `cli` is the command line.

pub mod app;
pub mod budget;
pub mod capabilities;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
pub mod control;
pub mod drivers;
pub mod failure;
pub mod fsutil;
pub mod hardware;
pub mod http;
#[cfg(test)]
mod layers;
pub mod mqtt;
pub mod plugins;
pub mod ratelimit;
pub mod readings;
pub mod runtime;
pub mod scaffold;
pub mod scheduler;
pub mod text;
