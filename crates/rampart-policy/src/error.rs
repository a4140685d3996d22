//! Errors of this crate: a policy document that cannot be used.

/// A policy document that was refused, and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The document is not valid TOML or JSON, or does not fit the schema.
    #[error("policy line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// A value is out of range or contradicts another (a regex that does
    /// not compile, a duplicate rule id, an unknown schema version).
    #[error("policy line {line}: {message}")]
    Invalid { line: usize, message: String },
    /// Larger than a policy may be.
    #[error("the policy is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
}
