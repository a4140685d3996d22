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
        if original.is_ascii()
            && !original
                .bytes()
                .any(|b| b < 0x20 && b != b'\n' && b != b'\t')
        {
            return Normalized {
                original,
                text: Cow::Borrowed(original),
                origin: None,
            };
        }
        let mut text = String::with_capacity(original.len());
        let mut origin = Vec::with_capacity(original.len());
        for (at, c) in original.char_indices() {
            let before = text.len();
            push_normalized(c, &mut text);
            origin.resize(origin.len() + (text.len() - before), at as u32);
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
        let start = origin[range.start] as usize;
        let last = origin[range.end - 1] as usize;
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
