//! `rampart bench handshakes`: what the delivery service spends checking
//! one commit against its group's state (openmls `PublicGroup`), by group
//! size, on one core. Messages never pay it; commits, proposals and
//! removals of revoked devices do.

use rampart_server::handshake_cost::{self, HandshakeCost};

#[derive(clap::Args, Debug)]
pub struct HandshakeArgs {
    /// Group sizes (devices), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,16,128,1024")]
    pub members: Vec<usize>,
    /// Verifications timed per size (the mean is reported).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn handshakes(args: &HandshakeArgs) -> anyhow::Result<()> {
    let mut results: Vec<HandshakeCost> = Vec::with_capacity(args.members.len());
    for &members in &args.members {
        if !args.json {
            eprintln!("building a group of {members} devices...");
        }
        results.push(handshake_cost::measure(members, args.rounds).map_err(anyhow::Error::msg)?);
    }
    if args.json {
        println!("{}", serde_json::json!({ "handshakes": results }));
        return Ok(());
    }
    println!("rampart bench handshakes: server-side verification of one commit, one core");
    println!(
        "{:>8} {:>7} {:>12} {:>12}",
        "devices", "rounds", "commit ms", "tree ms"
    );
    for r in &results {
        println!(
            "{:>8} {:>7} {:>12.3} {:>12.3}",
            r.members, r.rounds, r.commit_ms, r.tree_ms
        );
    }
    Ok(())
}
