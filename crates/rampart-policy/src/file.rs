//! File risk: what a file really is, and whether it may be sent or opened.

use crate::error::PolicyError;
use serde::{Deserialize, Serialize};

/// The organisation's file rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRules {}

impl FileRules {
    pub(crate) fn validate(&self, _source: &str) -> Result<(), PolicyError> {
        Ok(())
    }
}
