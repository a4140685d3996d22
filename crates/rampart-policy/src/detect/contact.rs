//! E-mail addresses and phone numbers (off by default).

use super::Candidate;

pub(crate) fn find(_text: &str, _out: &mut Vec<Candidate>) {}
