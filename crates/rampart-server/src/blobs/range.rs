//! The `Range` header of a blob download. Clients resume with
//! `bytes=N-`; a single closed range `bytes=N-M` is served too. Anything
//! else (several ranges, suffix ranges, other units) is refused rather than
//! silently answered with the whole blob, which a resuming client would
//! append to what it has.

/// Longest `Range` header looked at.
const MAX_RANGE_HEADER: usize = 64;

/// What a `Range` header asks for, checked against the blob's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// No header: the whole blob (`200`).
    Whole,
    /// Bytes `start..end` of it (`206`, `end` exclusive, at most the size).
    Part { start: u64, end: u64 },
    /// Starts at or past the end (`416`).
    Unsatisfiable,
}

/// A header that is not one range of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Parses `header` for a blob of `size` bytes (`size` ≥ 1).
pub fn parse(header: Option<&str>, size: u64) -> Result<Requested, Malformed> {
    let Some(header) = header else {
        return Ok(Requested::Whole);
    };
    if header.len() > MAX_RANGE_HEADER {
        return Err(Malformed);
    }
    let spec = header.trim().strip_prefix("bytes=").ok_or(Malformed)?;
    let (first, last) = spec.trim().split_once('-').ok_or(Malformed)?;
    let number = |s: &str| -> Result<u64, Malformed> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Malformed);
        }
        s.parse().map_err(|_| Malformed)
    };
    let start = number(first.trim())?;
    let last = last.trim();
    let end = if last.is_empty() {
        size
    } else {
        let last = number(last)?;
        if last < start {
            return Err(Malformed);
        }
        last.saturating_add(1).min(size)
    };
    if start >= size {
        return Ok(Requested::Unsatisfiable);
    }
    Ok(Requested::Part { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse(None, 10), Ok(Requested::Whole));
        assert_eq!(
            parse(Some("bytes=0-"), 10),
            Ok(Requested::Part { start: 0, end: 10 })
        );
        assert_eq!(
            parse(Some("bytes=4-"), 10),
            Ok(Requested::Part { start: 4, end: 10 })
        );
        assert_eq!(
            parse(Some("bytes=9-"), 10),
            Ok(Requested::Part { start: 9, end: 10 })
        );
        assert_eq!(
            parse(Some("bytes=2-5"), 10),
            Ok(Requested::Part { start: 2, end: 6 })
        );
        assert_eq!(
            parse(Some("bytes=2-99"), 10),
            Ok(Requested::Part { start: 2, end: 10 })
        );
        assert_eq!(parse(Some("bytes=10-"), 10), Ok(Requested::Unsatisfiable));
        assert_eq!(
            parse(Some("bytes=18446744073709551615-"), 10),
            Ok(Requested::Unsatisfiable)
        );
        for bad in [
            "",
            "bytes=",
            "bytes=-5",
            "bytes=a-",
            "bytes=+1-",
            "bytes=1-2,4-5",
            "items=1-",
            "bytes=5-2",
            "bytes=99999999999999999999999-",
            "bytes=1",
        ] {
            assert_eq!(parse(Some(bad), 10), Err(Malformed), "{bad}");
        }
        assert_eq!(parse(Some(&"1".repeat(100)), 10), Err(Malformed));
    }
}
