//! The text detectors match on: a normalised shadow copy of what the user
//! wrote, with a map back to the original bytes.
//!
//! Normalisation defeats the cheap evasions: compatibility forms are folded
//! (NFKC: full-width `４１１１` becomes `4111`), zero-width and other format
//! characters are dropped, decimal digits of other scripts become ASCII
//! digits, and the many Unicode dashes and spaces become `-` and ` `.
//! Findings are reported as spans of the original text, so redaction
//! covers what was really typed, hidden characters included.

use std::borrow::Cow;
use std::ops::Range;
use unicode_normalization::UnicodeNormalization as _;

/// A normalised copy of a text and the way back to the original.
pub struct Normalized<'a> {
    original: &'a str,
    text: Cow<'a, str>,
    /// For each byte of `text`, the offset in `original` of the character
    /// it came from. `None` when `text` is `original` (the common case).
    origin: Option<Vec<u32>>,
}

impl<'a> Normalized<'a> {
    /// Normalises `original`. Offsets are kept as `u32` (half the memory
    /// of `usize` for the map); a text beyond 4 GiB is read only up to
    /// there, far beyond anything a message or a scanned file can be.
    pub fn new(original: &'a str) -> Self {
        let original = cut(original, u32::MAX as usize);
        // Most texts, accents, emoji and all, have nothing to fold: they
        // are read in place, without a copy or a map.
        let Some(first) = first_change(original) else {
            return Normalized {
                original,
                text: Cow::Borrowed(original),
                origin: None,
            };
        };
        let mut text = String::with_capacity(original.len());
        let mut origin: Vec<u32> = Vec::with_capacity(original.len());
        let mut at = first;
        text.push_str(&original[..first]);
        origin.extend(0..first as u32);
        while at < original.len() {
            // Plain ASCII is copied a run at a time.
            let bytes = &original.as_bytes()[at..];
            let plain = bytes
                .iter()
                .position(|&b| !is_plain_ascii(b))
                .unwrap_or(bytes.len());
            if plain > 0 {
                text.push_str(&original[at..at + plain]);
                origin.extend(at as u32..(at + plain) as u32);
                at += plain;
                continue;
            }
            let Some(c) = original[at..].chars().next() else {
                break;
            };
            let before = text.len();
            push_normalized(c, &mut text);
            origin.resize(origin.len() + (text.len() - before), at as u32);
            at += c.len_utf8();
        }
        Normalized {
            original,
            text: Cow::Owned(text),
            origin: Some(origin),
        }
    }

    /// The normalised text the detectors read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The original text.
    pub fn original(&self) -> &'a str {
        self.original
    }

    /// Maps a byte range of the normalised text to the range of the
    /// original text that produced it: from the start of the first
    /// character to the end of the last, so anything hidden in between
    /// is inside too.
    pub fn to_original(&self, range: Range<usize>) -> Range<usize> {
        let Some(origin) = &self.origin else {
            return range;
        };
        if range.start >= range.end || range.end > origin.len() {
            return range.start.min(self.original.len())..range.start.min(self.original.len());
        }
        // Bytes copied unchanged map to themselves, so an offset may fall
        // inside a character: step back to where it starts.
        let char_start = |mut at: usize| {
            while at > 0 && !self.original.is_char_boundary(at) {
                at -= 1;
            }
            at
        };
        let start = char_start(origin[range.start] as usize);
        let last = char_start(origin[range.end - 1] as usize);
        let end = last
            + self.original[last..]
                .chars()
                .next()
                .map_or(0, char::len_utf8);
        start..end
    }
}

/// The longest prefix of `s` of at most `max` bytes.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// ASCII that normalisation leaves alone: all but control characters.
fn is_plain_ascii(b: u8) -> bool {
    (0x20..0x7f).contains(&b) | (b == b'\n') | (b == b'\t') | (b == b'\r')
}

/// Where the first character that normalisation changes is, if any.
fn first_change(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        // Whole blocks of plain ASCII are skipped with a branch-free test
        // the compiler vectorises: most text is mostly ASCII.
        if let Some(block) = bytes.get(at..at + 32)
            && block.iter().fold(true, |all, &b| all & is_plain_ascii(b))
        {
            at += 32;
            continue;
        }
        if is_plain_ascii(bytes[at]) {
            at += 1;
            continue;
        }
        let c = s[at..].chars().next()?;
        if c.is_ascii() || changes(c) {
            return Some(at);
        }
        at += c.len_utf8();
    }
    None
}

/// Whether normalisation changes a non-ASCII character.
fn changes(c: char) -> bool {
    is_invisible(c)
        || decimal_digit(c).is_some()
        || is_dash(c)
        || c.is_whitespace()
        || has_compatibility_form(c)
}

/// The blocks holding characters whose NFKC form differs from themselves
/// in ways that matter here: superscripts and fractions, ligatures and
/// letter-like symbols, enclosed and full-width forms, mathematical
/// alphanumerics. Everything else (accented letters, other scripts, emoji)
/// is left as it is, which saves running NFKC on ordinary text.
fn has_compatibility_form(c: char) -> bool {
    matches!(c as u32,
        0xA0..=0xBF
        | 0x132..=0x133 | 0x13F..=0x140 | 0x149 | 0x17F | 0x1C4..=0x1CC | 0x1F1..=0x1F3
        | 0x2B0..=0x2FF
        | 0x2070..=0x24FF
        | 0x2C7C..=0x2C7D
        | 0x3131..=0x319F
        | 0x3200..=0x33FF
        | 0xFB00..=0xFFEF
        | 0x1D400..=0x1D7FF
        | 0x1F100..=0x1F1FF)
}

/// Appends the normalised form of one character.
fn push_normalized(c: char, out: &mut String) {
    if c.is_ascii() {
        // Control characters (other than line breaks and tabs) are noise
        // inserted between digits as easily as zero-width spaces.
        if !c.is_ascii_control() || c == '\n' || c == '\t' || c == '\r' {
            out.push(c);
        }
        return;
    }
    if is_invisible(c) {
        return;
    }
    if let Some(d) = decimal_digit(c) {
        out.push(char::from(b'0' + d));
        return;
    }
    if is_dash(c) {
        out.push('-');
        return;
    }
    if c.is_whitespace() {
        out.push(' ');
        return;
    }
    if !has_compatibility_form(c) {
        out.push(c);
        return;
    }
    for n in std::iter::once(c).nfkc() {
        if is_invisible(n) {
            continue;
        }
        match decimal_digit(n) {
            Some(d) => out.push(char::from(b'0' + d)),
            None if is_dash(n) => out.push('-'),
            None => out.push(n),
        }
    }
}

/// Zero-width, bidirectional and other format characters (general category
/// Cf, the ones seen in text), plus the soft hyphen and variation selectors.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

fn is_dash(c: char) -> bool {
    matches!(
        c,
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' | '\u{2043}'
    )
}

/// The value of a decimal digit of any script (general category Nd), for
/// the scripts in use; NFKC already folds full-width and mathematical ones.
fn decimal_digit(c: char) -> Option<u8> {
    const ZEROS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
        0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
        0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450,
        0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x16A60, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2,
        0x1D7EC, 0x1D7F6, 0x1E950, 0x1FBF0,
    ];
    let cp = c as u32;
    let i = ZEROS.partition_point(|&z| z <= cp);
    let zero = *ZEROS.get(i.checked_sub(1)?)?;
    let value = cp - zero;
    (value < 10).then_some(value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_borrowed() {
        let n = Normalized::new("card 4111 1111");
        assert!(matches!(n.text, Cow::Borrowed(_)));
        assert_eq!(n.to_original(5..9), 5..9);
    }

    #[test]
    fn ordinary_text_in_any_script_is_borrowed() {
        let n = Normalized::new("Grüße aus Köln 🎉 こんにちは привет 4111");
        assert!(matches!(n.text, Cow::Borrowed(_)));
    }

    /// Regression (found by the property tests): bytes copied unchanged
    /// before the first folded character mapped into the middle of a
    /// multi-byte character, and mapping a span back panicked.
    #[test]
    fn spans_before_the_first_folded_character_map_to_whole_characters() {
        let original = "啕x\u{200B}y";
        let n = Normalized::new(original);
        assert_eq!(n.text(), "啕xy");
        assert_eq!(&original[n.to_original(1..3)], "啕");
        assert_eq!(&original[n.to_original(0..4)], "啕x");
    }

    #[test]
    fn plain_runs_and_folded_characters_map_back() {
        let original = "café ４１ and\u{2060}x ² ok";
        let n = Normalized::new(original);
        assert_eq!(n.text(), "café 41 andx 2 ok");
        let at = n.text().find("41").unwrap();
        assert_eq!(&original[n.to_original(at..at + 2)], "４１");
        let at = n.text().find("andx").unwrap();
        assert_eq!(&original[n.to_original(at..at + 4)], "and\u{2060}x");
    }

    #[test]
    fn fullwidth_and_other_script_digits_become_ascii() {
        let n = Normalized::new("４１１１ ٤١١١ ४१११");
        assert_eq!(n.text(), "4111 4111 4111");
    }

    #[test]
    fn zero_width_characters_are_dropped_but_covered_by_spans() {
        let original = "x 41\u{200B}11 y";
        let n = Normalized::new(original);
        assert_eq!(n.text(), "x 4111 y");
        let span = n.to_original(2..6);
        assert_eq!(&original[span], "41\u{200B}11");
    }

    #[test]
    fn dashes_and_spaces_are_folded() {
        let n = Normalized::new("123\u{2010}45\u{2212}6789\u{00A0}x");
        assert_eq!(n.text(), "123-45-6789 x");
    }

    #[test]
    fn digit_table_is_sorted_and_bounded() {
        assert_eq!(decimal_digit('٩'), Some(9));
        assert_eq!(decimal_digit('a'), None);
        assert_eq!(decimal_digit('\u{0670}'), None);
    }
}
