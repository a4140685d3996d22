//! The native Rampart client: an encrypted profile on disk, the REST and
//! WebSocket transport, and [`Client`], the SDK the CLI, bots and the demo are
//! built on. The protocol logic itself lives in `rampart-core`; this crate
//! drives it: it fetches, sends, keeps one transaction per step, acknowledges
//! what was durably processed and retries commits that lost an epoch race.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_client::ClientError> {
//! use rampart_client::{Client, Target};
//! let dir = std::path::Path::new("/tmp/alice");
//! let mut alice = Client::open(dir, "profile passphrase")?;
//! alice.sync().await?;
//! alice.send_text(&Target::parse("@bob")?, "hello").await?;
//! # Ok(()) }
//! ```

mod account;
mod admin;
mod client;
mod clock;
mod dlp;
mod error;
mod files;
mod link;
pub mod store;
mod transport;

pub use account::{DeviceEntry, Revoked, Verification};
pub use admin::AdminClient;
pub use client::{Alert, Client, GroupSummary, Registration, Target};
pub use clock::Clock;
pub use error::ClientError;
pub use files::{Downloaded, Progress, Silent};
pub use link::{Approved, LinkDisplay};
pub use rampart_core::Event;
pub use rampart_core::guard::{Guard, Hit, TextCheck};
pub use store::HistoryEntry;
pub use transport::{Http, Socket};

/// Milliseconds since the Unix epoch on this machine's clock.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
