//! The integration test binary: one `mod` per area.

mod drivers;
mod hardware;
