//! CPU temperature from the kernel's thermal zone.
//!
//! # Troubleshooting
//!
//! - **Cannot read thermal_zone0**: the kernel exposes no thermal sensor
//!   there (a container, or a non-Raspberry Pi OS kernel); check
//!   `ls /sys/class/thermal/`.

use std::path::Path;

use crate::hardware::HwError;

/// The SoC's sensor on every Raspberry Pi OS kernel.
pub const THERMAL_ZONE0: &str = "/sys/class/thermal/thermal_zone0/temp";

/// Reads a thermal zone file (millidegrees Celsius, e.g. `47236`).
pub fn read_temperature_c(path: &Path) -> Result<f32, HwError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        HwError::NotPresent(format!(
            "cannot read {}: {e} (no thermal sensor exposed there; check ls /sys/class/thermal/)",
            path.display()
        ))
    })?;
    parse_millidegrees(&text).ok_or_else(|| {
        HwError::Sensor(format!(
            "{} holds `{}`, not millidegrees Celsius",
            path.display(),
            text.trim()
        ))
    })
}

fn parse_millidegrees(text: &str) -> Option<f32> {
    let millidegrees: i64 = text.trim().parse().ok()?;
    Some(millidegrees as f32 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millidegrees_parse() {
        assert_eq!(parse_millidegrees("47236\n"), Some(47.236));
        assert_eq!(parse_millidegrees("-5000"), Some(-5.0));
        assert_eq!(parse_millidegrees("hot"), None);
        assert_eq!(parse_millidegrees(""), None);
    }

    #[test]
    fn a_missing_or_garbled_file_is_an_error_naming_the_path() {
        let missing = read_temperature_c(Path::new("/nonexistent/temp")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/temp"));
        let dir = std::env::temp_dir().join(format!("cpu-temp-test-{}", std::process::id()));
        std::fs::write(&dir, "garbage").unwrap();
        let garbled = read_temperature_c(&dir);
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(garbled, Err(HwError::Sensor(m)) if m.contains("garbage")));
    }
}
