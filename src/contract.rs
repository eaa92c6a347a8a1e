//! The one `bindgen!` over `wit/plugin.wit`.
//!
//! Bindings are generated from the `host` world, which is the shared Python
//! runtime's: it imports every capability and exports every entry point plus
//! the runtime's `loader`; each plugin component's world is a subset of it. Imports are linked one interface at a time (see `capabilities`), and
//! exports are looked up one interface at a time (see `runtime`), so a plugin
//! only needs the pieces its own world has.

wasmtime::component::bindgen!({
    world: "host",
    path: "wit",
});

pub use exports::wasi_python_host::plugin::{
    automation, bme680_logic, dashboard, dht22_logic, loader, pi_monitor_logic, sensor,
};
pub use wasi_python_host::plugin::{
    buzzer_controller, gpio_provider, led_controller, log, readings, settings, state, system,
    telemetry, types,
};

/// The WIT package the host implements, as it appears in import names.
pub const PACKAGE: &str = "wasi-python-host:plugin";
/// The contract version; a plugin built against another major.minor is refused.
pub const VERSION: &str = "0.1.0";
