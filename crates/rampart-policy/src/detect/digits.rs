//! Runs of digits: the candidates for cards, SSNs and other numbers.
//!
//! A run is a maximal stretch of digit groups joined by single spaces or
//! dashes (`4111 1111 1111 1111`, `123-45-6789`) that does not continue a
//! word or a decimal number on either side, so a number inside a longer
//! digit run, a hex string or an IBAN is never a candidate.

/// Most groups a run may have and still be a candidate.
pub(crate) const MAX_GROUPS: usize = 8;

/// One run: its digit groups (byte ranges of the text) and separators.
pub(crate) struct Run {
    pub groups: [(usize, usize); MAX_GROUPS],
    pub len: usize,
    /// The separator before each group after the first.
    pub seps: [u8; MAX_GROUPS],
}

impl Run {
    pub fn groups(&self) -> &[(usize, usize)] {
        &self.groups[..self.len]
    }

    pub fn start(&self) -> usize {
        self.groups[0].0
    }

    pub fn end(&self) -> usize {
        self.groups[self.len - 1].1
    }

    /// The group lengths of `groups[from..to]`.
    pub fn lengths(&self, from: usize, to: usize) -> impl Iterator<Item = usize> + '_ {
        self.groups[from..to].iter().map(|(s, e)| e - s)
    }

    /// Whether all separators inside `groups[from..to]` are the same byte.
    pub fn uniform(&self, from: usize, to: usize) -> bool {
        let seps = &self.seps[from + 1..to];
        seps.windows(2).all(|w| w[0] == w[1])
    }

    /// Appends the digits of `groups[from..to]` to `out`.
    pub fn digits(&self, text: &[u8], from: usize, to: usize, out: &mut Vec<u8>) {
        out.clear();
        for &(s, e) in &self.groups[from..to] {
            out.extend(text[s..e].iter().map(|b| b - b'0'));
        }
    }
}

/// Calls `f` for every run in `text` that stands on its own.
#[cfg(test)]
pub(crate) fn for_each_run(text: &str, f: impl FnMut(&Run)) {
    scan(text, f, |_| {});
}

/// One pass over the digits of `text`: `on_run` gets every run that stands
/// on its own, and `on_letters` the start of every word that opens with two
/// letters and two digits (`DE89…`), where an IBAN may begin.
pub(crate) fn scan(text: &str, mut on_run: impl FnMut(&Run), mut on_letters: impl FnMut(usize)) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        if i >= 2
            && b[i - 1].is_ascii_alphabetic()
            && b[i - 2].is_ascii_alphabetic()
            && (i == 2 || !super::is_word_byte(b[i - 3]))
            && b.get(i + 1).is_some_and(u8::is_ascii_digit)
        {
            on_letters(i - 2);
        }
        let mut run = Run {
            groups: [(0, 0); MAX_GROUPS],
            len: 0,
            seps: [0; MAX_GROUPS],
        };
        let mut too_many = false;
        let mut sep = 0u8;
        loop {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if run.len < MAX_GROUPS {
                run.groups[run.len] = (start, i);
                run.seps[run.len] = sep;
                run.len += 1;
            } else {
                too_many = true;
            }
            match (b.get(i), b.get(i + 1)) {
                (Some(&s @ (b' ' | b'-')), Some(d)) if d.is_ascii_digit() => {
                    sep = s;
                    i += 1;
                }
                _ => break,
            }
        }
        if !too_many && stands_alone(b, run.start(), run.end()) {
            on_run(&run);
        }
    }
}

/// Not glued to a word, and not the fraction or the integer part of a
/// decimal, a date or a version (`3.14159…`, `12/2029`).
fn stands_alone(b: &[u8], start: usize, end: usize) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let joiner = |x: u8| matches!(x, b'.' | b',' | b'/' | b':');
    if let Some(&p) = start.checked_sub(1).and_then(|i| b.get(i)) {
        if word(p) {
            return false;
        }
        if joiner(p) && start >= 2 && b[start - 2].is_ascii_digit() {
            return false;
        }
    }
    if let Some(&n) = b.get(end) {
        if word(n) {
            return false;
        }
        if joiner(n) && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            return false;
        }
    }
    true
}

/// The Luhn (mod 10) check over digit values.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let d = u32::from(d);
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for_each_run(text, |r| out.push(r.lengths(0, r.len).collect()));
        out
    }

    #[test]
    fn groups_and_boundaries() {
        assert_eq!(runs("a 4111 1111-1111 1111 b"), vec![vec![4, 4, 4, 4]]);
        assert_eq!(runs("x4111 y"), Vec::<Vec<usize>>::new());
        assert_eq!(runs("3.14159 12/2029 v1.2"), Vec::<Vec<usize>>::new());
        assert_eq!(runs("12  34"), vec![vec![2], vec![2]]);
        assert_eq!(runs("1 2 3 4 5 6 7 8 9"), Vec::<Vec<usize>>::new());
    }

    #[test]
    fn luhn_known_values() {
        let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(luhn(&d("79927398713")));
        assert!(!luhn(&d("4111111111111112")));
    }
}
