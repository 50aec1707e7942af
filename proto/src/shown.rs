//! Strings from peers (paths, refusal details, error texts that quote them) made safe to put
//! in a log line: control characters and bidirectional overrides are escaped, so a name
//! cannot forge a line or repaint a terminal, and the text is cut at [`MAX_SHOWN`] characters,
//! so one message cannot flood the log.

use std::fmt;

/// Most characters of one peer string a log line shows.
pub const MAX_SHOWN: usize = 200;

/// A string as a log line shows it (see the module doc).
#[derive(Clone, Copy)]
pub struct Shown<'a>(&'a str);

/// `s` escaped and bounded for a log line.
pub fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

/// Characters that change how a terminal lays text out: controls (line breaks, escape
/// sequences) and Unicode's bidirectional embeddings, overrides and isolates.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(MAX_SHOWN) {
            if needs_escape(c) {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        if let Some((at, _)) = chars.next() {
            write!(f, "… ({} more bytes)", self.0.len() - at)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_escapes_cannot_forge_a_line() {
        let s = shown("a\nERROR forged\u{1b}[2J\u{202E}txt.exe").to_string();
        assert_eq!(s, "a\\u{a}ERROR forged\\u{1b}[2J\\u{202e}txt.exe");
        assert!(!s.chars().any(needs_escape));
    }

    #[test]
    fn long_strings_are_cut() {
        let long = "é".repeat(5000);
        let s = shown(&long).to_string();
        assert!(s.starts_with(&"é".repeat(MAX_SHOWN)));
        assert!(s.ends_with(&format!("… ({} more bytes)", (5000 - MAX_SHOWN) * 2)));
        assert_eq!(shown("plain name.txt").to_string(), "plain name.txt");
    }

    proptest::proptest! {
        #[test]
        fn never_a_control_character_and_never_long(s in ".{0,600}") {
            let out = shown(&s).to_string();
            proptest::prop_assert!(!out.chars().any(needs_escape));
            proptest::prop_assert!(out.chars().count() <= MAX_SHOWN * 10 + 40);
        }
    }
}
