//! Quoting untrusted text (plugin log lines and prints, HTTP header values,
//! MQTT topics) into a log line or a message.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Untrusted text made fit for one log line or message: cut to at most
/// `max` bytes of `s` (on a character boundary), with every control
/// character written as an escape (`\r`, `\n`, `\t`, `\u{1b}`, ...).
/// Used wherever text from a plugin, an HTTP client or a broker is quoted.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &s[..end];
    if !cut.chars().any(needs_escape) {
        return Cow::Borrowed(cut);
    }
    let mut out = String::with_capacity(cut.len() + 16);
    for c in cut.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls, DEL, and the Unicode controls that reorder or hide
/// text on a terminal (bidirectional overrides and isolates, zero-width
/// and line/paragraph separators).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_made_visible() {
        for (input, shown) in [
            ("plain text, ünïcode", "plain text, ünïcode"),
            ("ok\rFAKE: all good", "ok\\rFAKE: all good"),
            ("line\n[host] forged", "line\\n[host] forged"),
            ("\x1b[2J\x1b[1;1Hwiped", "\\u{1b}[2J\\u{1b}[1;1Hwiped"),
            ("tab\there\x7f", "tab\\there\\u{7f}"),
            ("\u{202e}txt.exe", "\\u{202e}txt.exe"),
            ("\u{85}next line", "\\u{85}next line"),
        ] {
            assert_eq!(truncate(input, 1024), shown, "{input:?}");
        }
        // The cut is on the input, on a character boundary.
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("a\rb", 2), "a\\r");
        assert!(matches!(truncate("clean", 10), Cow::Borrowed(_)));
    }
}
