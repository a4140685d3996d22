//! `rampart demo`: a throwaway server and three users, narrated. It shows what
//! the server stores (ciphertext and routing metadata) next to what the
//! clients see (text).

use anyhow::Context as _;
use rampart_client::{Client, Registration, Target};
use rampart_proto::Username;
use rampart_server::{Server, ServerConfig};

const PASSPHRASE: &str = "demo passphrase";

fn say(text: &str) {
    println!("\n== {text}");
}

async fn user(root: &std::path::Path, url: &str, name: &str) -> anyhow::Result<Client> {
    let client = Client::register(
        &root.join(name),
        PASSPHRASE,
        Registration {
            server: url,
            username: name,
            password: "demo-password-long",
            invite: None,
            device_name: "demo",
        },
    )
    .await
    .with_context(|| format!("registering {name}"))?;
    println!(
        "   @{name} registered: identity key created, device {} certified, KeyPackages uploaded",
        client.device()
    );
    Ok(client)
}

async fn show_inbox(client: &mut Client) -> anyhow::Result<()> {
    client.sync().await?;
    for e in client.inbox(false)? {
        println!(
            "   @{} reads in {}: @{} says {:?}",
            client.username(),
            client.conversation_label(&e.group),
            e.sender,
            e.text
        );
    }
    Ok(())
}

/// What the server's database holds for the newest messages.
fn show_server_view(data: &std::path::Path, needle: &str) -> anyhow::Result<()> {
    show_disk("server data directory", data, needle)
}

/// Whether `needle` appears in any file directly in `dir`.
fn show_disk(label: &str, dir: &std::path::Path, needle: &str) -> anyhow::Result<()> {
    let mut found = false;
    let mut total = 0usize;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        total += bytes.len();
        found |= bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    }
    println!(
        "   {label}: {total} bytes on disk; the text {needle:?} appears in it: {}",
        if found { "YES (bug!)" } else { "no" }
    );
    Ok(())
}

pub async fn run() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("server");
    let config = ServerConfig {
        data_dir: data.clone(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        registration: rampart_server::Registration::Open,
        ..ServerConfig::default()
    };
    let server = Server::open(config).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    say(&format!(
        "A Rampart server is running on {url}, data in a temporary directory"
    ));

    say("Three people register; each gets an identity key and a certified device");
    let mut alice = user(tmp.path(), &url, "alice").await?;
    let mut bob = user(tmp.path(), &url, "bob").await?;
    let mut carol = user(tmp.path(), &url, "carol").await?;

    say("alice writes to bob: a 1:1 conversation is an MLS group of their devices");
    let secret = "the launch code is 0000";
    alice.send_text(&Target::parse("@bob")?, secret).await?;
    println!("   alice sent {secret:?}");
    show_server_view(&data, secret)?;
    show_inbox(&mut bob).await?;
    bob.send_text(&Target::parse("@alice")?, "got it, thanks")
        .await?;
    show_inbox(&mut alice).await?;

    say("alice creates #project with bob and carol; the group's name is encrypted too");
    alice
        .create_group(
            "project",
            &[Username::parse("bob")?, Username::parse("carol")?],
            None,
        )
        .await?;
    bob.sync().await?;
    carol.sync().await?;
    carol
        .send_text(&Target::parse("#project")?, "hello team")
        .await?;
    show_inbox(&mut alice).await?;
    show_inbox(&mut bob).await?;
    show_server_view(&data, "project")?;

    say("alice removes carol; the group moves to a new epoch whose keys carol never gets");
    alice
        .remove_member("project", &Username::parse("carol")?)
        .await?;
    alice
        .send_text(&Target::parse("#project")?, "carol cannot read this")
        .await?;
    show_inbox(&mut bob).await?;
    carol.sync().await?;
    let carol_sees = carol.inbox(false)?;
    println!("   carol's new messages: {}", carol_sees.len());

    say("The organisation masks card numbers and blocks private keys, before encryption");
    let policy = rampart_policy::Policy::parse(
        "version = 1\n[detectors.card]\naction = \"redact\"\n[detectors.private_key]\naction = \"block\"\n",
    )?;
    rampart_server::set_dlp_policy(&data, &policy.to_json()).await?;
    alice.sync().await?;
    alice
        .send_text(
            &Target::parse("#project")?,
            "the team card is 4111 1111 1111 1111",
        )
        .await?;
    show_inbox(&mut bob).await?;
    let key = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW".repeat(2)
    );
    match alice.send_text(&Target::parse("#project")?, &key).await {
        Err(e) => println!("   alice tries to paste a private key: {e}"),
        Ok(_) => println!("   the private key was sent (bug!)"),
    }
    show_server_view(&data, "4111 1111 1111 1111")?;

    say("What each profile holds on disk is encrypted with its passphrase (SQLCipher)");
    show_disk(
        "bob's profile directory",
        &tmp.path().join("bob"),
        "carol cannot read this",
    )?;

    for c in [alice, bob, carol] {
        c.close().await;
    }
    let _ = stop.send(());
    let _ = task.await;

    say("The audit log says who did what and when, never what anyone wrote");
    let console = rampart_server::AdminConsole::open(&data).await?;
    let latest = console
        .audit_page(&rampart_proto::audit::AuditQuery {
            newest_first: true,
            limit: Some(8),
            ..Default::default()
        })
        .await?;
    for e in latest.entries.iter().rev() {
        println!(
            "   #{:<3} {:<8} {:<22} {}",
            e.id,
            e.actor.as_deref().unwrap_or("-"),
            e.action,
            e.target.as_deref().unwrap_or("")
        );
    }
    match console.audit_verify().await? {
        Ok(report) => println!(
            "   hash chain and signed checkpoints verify: intact, {} entries",
            report.entries
        ),
        Err(broken) => println!("   the audit log is {broken} (bug!)"),
    }
    console.close().await;
    say("Done. The server and all profiles were in a temporary directory, now deleted.");
    Ok(())
}
