//! `rampart bench audit`: appending, sealing and verifying the audit log on
//! a fresh database in a temporary directory.

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Entries to append, seal and verify.
    #[arg(long, default_value_t = 20_000)]
    pub entries: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn audit(args: &AuditArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    if !args.json {
        eprintln!(
            "appending {} entries, one transaction each...",
            args.entries
        );
    }
    let cost = rampart_server::audit::cost::measure(dir.path(), args.entries.max(1)).await?;
    if args.json {
        println!("{}", serde_json::json!({ "audit": cost }));
        return Ok(());
    }
    println!("rampart bench audit: {} entries, one core", cost.entries);
    println!(
        "  append (one durable transaction each)  {:>10.0} entries/s",
        cost.append_per_sec
    );
    println!(
        "  seal into the hash chain               {:>10.0} entries/s",
        cost.seal_per_sec
    );
    println!(
        "  verify chain and checkpoint            {:>10.0} entries/s",
        cost.verify_per_sec
    );
    Ok(())
}
