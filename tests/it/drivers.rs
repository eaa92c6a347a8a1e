//! The sensor drivers against the published reference vectors in
//! `tests/data/`: DHT22 frames and pulse trains (datasheet examples and
//! faults) and BME680 register dumps compensated by Bosch's BME68x API
//! (float path).
//!
//! Every test runs all cases of its kind and then reports every failing
//! vector id at once, so one bad case does not hide the others.

use serde_json::Value;
use wasi_python_host::drivers::bme680::{self, Calibration, RawField, Variant};
use wasi_python_host::drivers::dht22::{self, Dht22Error, Dht22Reading};

const DHT22_VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/dht22_vectors.json"
));
const BME680_VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/bme680_vectors.json"
));

/// Bosch reference tolerances the compensation must meet.
const TEMPERATURE_TOLERANCE_C: f64 = 0.01;
const PRESSURE_TOLERANCE_PA: f64 = 1.0;
const HUMIDITY_TOLERANCE_PCT: f64 = 0.01;
const GAS_TOLERANCE_RELATIVE: f64 = 0.001;

fn vectors(json: &str) -> Value {
    serde_json::from_str(json).expect("vector file is valid JSON")
}

/// Runs `check` on every case and fails once, listing every case that
/// failed with its id and reason. Fails too if there were no cases, so an
/// emptied vector file cannot pass silently.
fn check_all(cases: &Value, check: impl Fn(&Value) -> Result<(), String>) {
    let cases = cases.as_array().expect("cases is an array");
    assert!(!cases.is_empty(), "no vectors to check");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check(case).err().map(|why| {
                // Table-like vectors (gas_wait_encoding) have no id; their
                // contents identify them.
                let id = case["id"]
                    .as_str()
                    .map_or_else(|| case.to_string(), str::to_owned);
                format!("{id}: {why}")
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn bytes(value: &Value) -> Result<Vec<u8>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("expected a byte array, got {value}"))?
        .iter()
        .map(|b| {
            b.as_u64()
                .and_then(|b| u8::try_from(b).ok())
                .ok_or_else(|| format!("not a byte: {b}"))
        })
        .collect()
}

fn u32s(value: &Value) -> Result<Vec<u32>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("expected an array of durations, got {value}"))?
        .iter()
        .map(|n| {
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("not a duration: {n}"))
        })
        .collect()
}

fn number(value: &Value, what: &str) -> Result<f64, String> {
    value
        .as_f64()
        .ok_or_else(|| format!("{what} missing or not a number"))
}

// ---------------------------------------------------------------- DHT22 --

fn frame_of(case: &Value) -> Result<[u8; 5], String> {
    let frame = bytes(&case["frame"])?;
    frame
        .try_into()
        .map_err(|frame: Vec<u8>| format!("frame has {} bytes, not 5", frame.len()))
}

/// Compares a decode result with a case's `expected` object.
fn check_dht22_result(
    result: Result<Dht22Reading, Dht22Error>,
    expected: &Value,
) -> Result<(), String> {
    let tenths = |value: f32| (f64::from(value) * 10.0).round() as i64;
    let same_values = |temperature_c: f32, humidity_pct: f32, values: &Value| {
        let want = (
            values["temperature_x10"].as_i64(),
            values["humidity_x10"].as_i64(),
        );
        let got = (Some(tenths(temperature_c)), Some(tenths(humidity_pct)));
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "decoded {temperature_c} °C / {humidity_pct} %RH, expected x10 values {want:?}"
            ))
        }
    };
    match (expected["ok"].as_bool(), expected["error"].as_str(), result) {
        (Some(true), _, Ok(reading)) => {
            same_values(reading.temperature_c, reading.humidity_pct, expected)
        }
        (Some(false), Some("bad_checksum"), Err(Dht22Error::Checksum { expected: sum, .. })) => {
            match expected["computed_checksum"].as_u64() {
                Some(want) if u64::from(sum) != want => Err(format!(
                    "checksum error reports a sum of {sum}, expected {want}"
                )),
                _ => Ok(()),
            }
        }
        (
            Some(false),
            Some("out_of_range"),
            Err(Dht22Error::OutOfRange {
                temperature_c,
                humidity_pct,
            }),
        ) => match expected.get("decoded_if_accepted") {
            Some(values) => same_values(temperature_c, humidity_pct, values),
            None => Ok(()),
        },
        (Some(false), Some("short_read"), Err(Dht22Error::PulseCount { got })) => {
            match expected["pulses"].as_u64() {
                Some(want) if got as u64 != want => {
                    Err(format!("reported {got} pulses, expected {want}"))
                }
                _ => Ok(()),
            }
        }
        (
            Some(false),
            Some("timeout_no_response"),
            Err(Dht22Error::NoResponse | Dht22Error::Timeout | Dht22Error::PulseCount { got: 0 }),
        ) => Ok(()),
        (ok, error, result) => Err(format!(
            "expected ok={ok:?} error={error:?}, decoder returned {result:?}"
        )),
    }
}

#[test]
fn dht22_frames_decode_as_the_vectors_expect() {
    let vectors = vectors(DHT22_VECTORS);
    check_all(&vectors["cases"], |case| {
        let frame = frame_of(case)?;
        check_dht22_result(dht22::decode_frame(frame), &case["expected"])
    });
}

#[test]
fn dht22_pulse_trains_decode_to_their_frames() {
    let vectors = vectors(DHT22_VECTORS);
    check_all(&vectors["cases"], |case| {
        let high_us = u32s(&case["pulse_train"]["high_us"])?;
        let frame = frame_of(case)?;
        match dht22::decode_pulses(&high_us) {
            Ok(decoded) if decoded == frame => {
                check_dht22_result(dht22::decode_frame(decoded), &case["expected"])
            }
            other => Err(format!(
                "pulses decoded to {other:?}, frame is {frame:02x?}"
            )),
        }
    });
}

#[test]
fn dht22_pulse_train_faults_are_rejected() {
    let vectors = vectors(DHT22_VECTORS);
    check_all(&vectors["pulse_train_faults"], |case| {
        let high_us = u32s(&case["high_us"])?;
        let result = dht22::decode_pulses(&high_us).and_then(dht22::decode_frame);
        check_dht22_result(result, &case["expected"])
    });
}

#[test]
fn dht22_frames_survive_the_simulators_encoders() {
    let vectors = vectors(DHT22_VECTORS);
    check_all(&vectors["cases"], |case| {
        let frame = frame_of(case)?;
        let pulses = dht22::encode_pulses(frame, 27, 70);
        match dht22::decode_pulses(&pulses) {
            Ok(decoded) if decoded == frame => Ok(()),
            other => Err(format!("encode_pulses/decode_pulses gave {other:?}")),
        }?;
        let (temperature_c, humidity_pct) = match dht22::decode_frame(frame) {
            Ok(reading) => (reading.temperature_c, reading.humidity_pct),
            Err(Dht22Error::OutOfRange {
                temperature_c,
                humidity_pct,
            }) => (temperature_c, humidity_pct),
            // A corrupted frame has no values to re-encode.
            Err(_) => return Ok(()),
        };
        let encoded = dht22::encode_frame(temperature_c, humidity_pct);
        if encoded == frame {
            Ok(())
        } else {
            Err(format!("encode_frame gave {encoded:02x?}"))
        }
    });
}

// --------------------------------------------------------------- BME680 --

fn calibration_of(case: &Value) -> Result<Calibration, String> {
    let cal = &case["calibration"];
    Calibration::from_registers(
        &bytes(&cal["coeff1"])?,
        &bytes(&cal["coeff2"])?,
        &bytes(&cal["coeff3"])?,
    )
    .map_err(|e| format!("calibration rejected: {e}"))
}

fn within(what: &str, got: f32, want: f64, tolerance: f64) -> Result<(), String> {
    let error = (f64::from(got) - want).abs();
    if error <= tolerance {
        Ok(())
    } else {
        Err(format!(
            "{what} is {got}, expected {want} ± {tolerance} (off by {error})"
        ))
    }
}

#[test]
fn bme680_raw_fields_parse_to_the_vectors_adc_values() {
    let vectors = vectors(BME680_VECTORS);
    check_all(&vectors["cases"], |case| {
        let raw = RawField::parse(&bytes(&case["field_regs_0x1D_0x2D"])?, Variant::Bme680)
            .map_err(|e| e.to_string())?;
        let want = &case["raw"];
        let got = [
            ("adc_temp", u64::from(raw.adc_temp)),
            ("adc_pres", u64::from(raw.adc_pres)),
            ("adc_hum", u64::from(raw.adc_hum)),
            ("adc_gas_res_low", u64::from(raw.adc_gas)),
            ("gas_range_l", u64::from(raw.gas_range)),
        ];
        for (name, value) in got {
            if want[name].as_u64() != Some(value) {
                return Err(format!("{name} is {value}, expected {}", want[name]));
            }
        }
        Ok(())
    });
}

#[test]
fn bme680_compensation_matches_bosch_float_path() {
    let vectors = vectors(BME680_VECTORS);
    check_all(&vectors["cases"], |case| {
        let cal = calibration_of(case)?;
        let field = bytes(&case["field_regs_0x1D_0x2D"])?;
        let m = bme680::compensate(&cal, Variant::Bme680, &field).map_err(|e| e.to_string())?;
        let want = &case["expected"];
        within(
            "temperature_c",
            m.temperature_c,
            number(&want["temperature_c"], "expected.temperature_c")?,
            TEMPERATURE_TOLERANCE_C,
        )?;
        within(
            "pressure_pa",
            m.pressure_pa,
            number(&want["pressure_pa"], "expected.pressure_pa")?,
            PRESSURE_TOLERANCE_PA,
        )?;
        within(
            "humidity_pct",
            m.humidity_pct,
            number(&want["humidity_pct"], "expected.humidity_pct")?,
            HUMIDITY_TOLERANCE_PCT,
        )?;
        let gas = number(&want["gas_resistance_ohm"], "expected.gas_resistance_ohm")?;
        within(
            "gas_resistance_ohm",
            m.gas_resistance_ohm,
            gas,
            gas * GAS_TOLERANCE_RELATIVE,
        )
    });
}

/// The compensation follows Bosch's float path operation for operation in
/// `f32`, so beyond the tolerances above it should reproduce the reference's
/// exact bits; one ulp of slack covers a compiler contracting a multiply-add.
#[test]
fn bme680_compensation_reproduces_bosch_f32_bits() {
    let vectors = vectors(BME680_VECTORS);
    check_all(&vectors["cases"], |case| {
        let cal = calibration_of(case)?;
        let field = bytes(&case["field_regs_0x1D_0x2D"])?;
        let m = bme680::compensate(&cal, Variant::Bme680, &field).map_err(|e| e.to_string())?;
        let want = &case["expected_float_f32bits"];
        let got = [
            ("temperature_c", m.temperature_c),
            ("pressure_pa", m.pressure_pa),
            ("humidity_pct", m.humidity_pct),
            ("gas_resistance_ohm", m.gas_resistance_ohm),
        ];
        for (name, value) in got {
            let hex = want[name]
                .as_str()
                .and_then(|hex| hex.strip_prefix("0x"))
                .ok_or_else(|| format!("expected_float_f32bits.{name} missing"))?;
            let bits = u32::from_str_radix(hex, 16).map_err(|e| format!("{name}: {e}"))?;
            if value.to_bits().abs_diff(bits) > 1 {
                return Err(format!(
                    "{name} is {value} ({:#010X}), Bosch gives {} ({bits:#010X})",
                    value.to_bits(),
                    f32::from_bits(bits)
                ));
            }
        }
        Ok(())
    });
}

#[test]
fn bme680_status_flags_match_the_vectors() {
    let vectors = vectors(BME680_VECTORS);
    check_all(&vectors["cases"], |case| {
        let cal = calibration_of(case)?;
        let field = bytes(&case["field_regs_0x1D_0x2D"])?;
        let m = bme680::compensate(&cal, Variant::Bme680, &field).map_err(|e| e.to_string())?;
        let status = &case["status"];
        let want = (
            status["new_data"].as_bool(),
            status["gas_valid"].as_bool(),
            status["heat_stab"].as_bool(),
        );
        let got = (Some(m.new_data), Some(m.gas_valid), Some(m.heat_stable));
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "flags (new_data, gas_valid, heat_stable) are {got:?}, expected {want:?}"
            ))
        }
    });
}

#[test]
fn bme680_heater_registers_match_bosch() {
    let vectors = vectors(BME680_VECTORS);
    check_all(&vectors["cases"], |case| {
        let cal = calibration_of(case)?;
        let want_res_heat = case["res_heat_320C_amb25"]["float_path"].as_u64();
        let res_heat = bme680::heater_resistance(&cal, 320, 25);
        if want_res_heat != Some(u64::from(res_heat)) {
            return Err(format!(
                "res_heat for 320 °C at 25 °C is {res_heat}, expected {want_res_heat:?}"
            ));
        }
        let want_wait = case["gas_wait_150ms"].as_u64();
        let wait = bme680::gas_wait(150);
        if want_wait != Some(u64::from(wait)) {
            return Err(format!("gas_wait(150) is {wait}, expected {want_wait:?}"));
        }
        Ok(())
    });
}

#[test]
fn bme680_gas_wait_encoding_matches_bosch() {
    let vectors = vectors(BME680_VECTORS);
    check_all(&vectors["gas_wait_encoding"], |case| {
        let duration_ms = case["duration_ms"]
            .as_u64()
            .and_then(|ms| u16::try_from(ms).ok())
            .ok_or("duration_ms missing or not a u16")?;
        let want = case["gas_wait_reg"].as_u64();
        let got = bme680::gas_wait(duration_ms);
        if want == Some(u64::from(got)) {
            Ok(())
        } else {
            Err(format!(
                "gas_wait({duration_ms} ms) is {got:#04x}, expected {want:?}"
            ))
        }
    });
}

#[test]
fn bme680_simulator_encoding_round_trips_the_vector_values() {
    let vectors = vectors(BME680_VECTORS);
    check_all(&vectors["cases"], |case| {
        let cal = calibration_of(case)?;
        let want = &case["expected"];
        let target = |key: &str| number(&want[key], key).map(|v| v as f32);
        let (t, p, h, g) = (
            target("temperature_c")?,
            target("pressure_pa")?,
            target("humidity_pct")?,
            target("gas_resistance_ohm")?,
        );
        let field = bme680::encode_field(&cal, Variant::Bme680, t, p, h, g, true, true);
        let m = bme680::compensate(&cal, Variant::Bme680, &field).map_err(|e| e.to_string())?;
        within(
            "temperature_c",
            m.temperature_c,
            f64::from(t),
            TEMPERATURE_TOLERANCE_C,
        )?;
        within(
            "pressure_pa",
            m.pressure_pa,
            f64::from(p),
            PRESSURE_TOLERANCE_PA,
        )?;
        within(
            "humidity_pct",
            m.humidity_pct,
            f64::from(h),
            HUMIDITY_TOLERANCE_PCT,
        )?;
        within(
            "gas_resistance_ohm",
            m.gas_resistance_ohm,
            f64::from(g),
            f64::from(g) * GAS_TOLERANCE_RELATIVE,
        )
    });
}
