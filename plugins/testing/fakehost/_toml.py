"""Python values to the TOML text the host hands a plugin's `settings.get`.

The host parses `[plugins.NAME.settings]` from host.toml and gives each
value back as `toml::Value::to_string()` (Rust crate `toml` 0.9, writer
`toml_writer` 1.2). This module reproduces that output byte for byte for
the values a TOML file can hold: strings, integers, floats, booleans,
arrays and tables (as inline tables, keys sorted). Dates and times are not
supported; pass `Raw("1979-05-27")` for those, or for any exact text.
"""

import decimal
import math

I64_MIN, I64_MAX = -(2 ** 63), 2 ** 63 - 1


class Raw(str):
    """A setting given as TOML text, passed to the plugin unchanged:
    `Raw("not toml")` tests a plugin's handling of a malformed value."""


def toml_value(value):
    """The TOML text the host would pass for `value`."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not I64_MIN <= value <= I64_MAX:
            raise ValueError(f"{value} does not fit a TOML integer (64-bit signed)")
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = []
        for key in sorted(value):
            if not isinstance(key, str):
                raise TypeError(f"TOML table keys are strings, not {key!r}")
            items.append(f"{_key(key)} = {toml_value(value[key])}")
        return "{ " + ", ".join(items) + " }"
    raise TypeError(
        f"{type(value).__name__} {value!r} is not a TOML value this kit converts; "
        f"use str, int, float, bool, list, dict or fakehost.Raw(text)")


def _float(x):
    # Rust's `{}` for f64: the shortest digits that round-trip, never an
    # exponent; toml_writer appends ".0" to integral values.
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    text = format(decimal.Decimal(repr(x)).normalize(), "f")
    return text + ".0" if x.is_integer() else text


def _is_bare(b):
    return (0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A
            or b in (0x2D, 0x5F))  # 0-9 A-Z a-z - _


def _string(s):
    data = s.encode("utf-8")
    # toml_writer::TomlStringBuilder::as_default
    if all(_is_bare(b) or b in b"./ :" for b in data):
        return '"' + s + '"'
    max_single = max_double = run_single = run_double = 0
    escape = escape_codes = newline = False
    for b in data:
        run_single = run_single + 1 if b == 0x27 else 0
        run_double = run_double + 1 if b == 0x22 else 0
        max_single, max_double = max(max_single, run_single), max(max_double, run_double)
        if b == 0x5C:
            escape = True
        elif b == 0x09:
            pass
        elif b == 0x0A:
            newline = True
        elif b <= 0x1F or b == 0x7F:
            escape_codes = True
    if not (escape_codes or escape or max_double or newline):
        return _basic(data, multiline=False)
    if not (escape_codes or max_single or newline):
        return "'" + s + "'"
    if not (escape_codes or escape or max_double > 2):
        return _basic(data, multiline=True)
    if not (escape_codes or max_single > 2):
        return "'''" + ("\n" if newline else "") + s + "'''"
    return _basic(data, multiline=newline)


_ESCAPES = {0x08: b"\\b", 0x09: b"\\t", 0x0C: b"\\f", 0x0D: b"\\r", 0x5C: b"\\\\"}


def _basic(data, multiline):
    # toml_writer's escaping loop for basic and multi-line basic strings.
    delim = b'"""' if multiline else b'"'
    out = bytearray(delim)
    if multiline and b"\n" in data:
        out += b"\n"
    max_quotes = 2 if multiline else 0
    run = 0
    for b in data:
        if b == 0x22:
            run += 1
            if run > max_quotes:
                out += b'\\"'
                run = 0
                continue
        else:
            run = 0
        if b in _ESCAPES:
            out += _ESCAPES[b]
        elif b == 0x0A:
            out += b"\n" if multiline else b"\\n"
        elif b <= 0x1F or b == 0x7F:
            out += b"\\u%04X" % b
        else:
            out.append(b)
    out += delim
    return out.decode("utf-8")


def _key(k):
    data = k.encode("utf-8")
    if data and all(_is_bare(b) for b in data):
        return k
    has_single = b"'" in data
    has_double = b'"' in data
    has_escape = b"\\" in data
    has_codes = any((b <= 0x1F and b != 0x09) or b == 0x7F for b in data)
    if not (has_codes or has_escape or has_double):
        return '"' + k + '"'
    if not (has_codes or has_single):
        return "'" + k + "'"
    return _basic(data, multiline=False)
