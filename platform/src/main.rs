//! `berth`: the hosting server binary. Parses the command line and configuration, then hands
//! over to the library ([`berth::serve`]).

use clap::Parser;

/// mimalloc rather than glibc's malloc: the proxy allocates and frees a few dozen small
/// buffers per request on every thread, and glibc's allocator (with its arena locks and
/// consolidation of freed chunks) took about a tenth of Berth's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // mimalloc backs its memory with transparent huge pages, which stay resident in whole 2 MiB
    // blocks: over churn and logins RSS rose 25–50 % past the warm-up with them, and stayed
    // within 6 % without (bench/README.md, churn and logins). The flag covers the whole
    // address space (what MIMALLOC_ALLOW_THP=0 does); a kernel without it just keeps THP.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = berth::config::Cli::parse();
    match cli.command {
        berth::config::Command::Serve(args) => {
            let config = berth::config::Config::load(*args)?;
            let _log_writer = berth::init_tracing(&config.log_filter);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(berth::serve(config))?;
            Ok(())
        }
        berth::config::Command::Firewall(berth::config::FirewallCommand::Remove(args)) => {
            remove_firewall(args)
        }
    }
}

/// `berth firewall remove`: the rules of the installation named, or of the data directory's.
fn remove_firewall(args: berth::config::FirewallRemoveArgs) -> anyhow::Result<()> {
    let installation = match args.installation {
        Some(id) => id,
        None => {
            let dir = args
                .data_dir
                .unwrap_or_else(|| berth::config::DEFAULT_DATA_DIR.into());
            berth::stored_installation_id(&dir)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "{} holds no installation id (no {} file): give the data directory `berth serve` used, or --installation",
                    dir.display(),
                    berth::INSTALLATION_FILE
                )
            })?
        }
    };
    // Ids are what `berth serve` draws; anything else names no rules and would only reach
    // iptables as a comment.
    if installation.is_empty()
        || installation.len() > 64
        || !installation.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        anyhow::bail!("{installation:?} is not an installation id (letters and digits)");
    }
    let removed = berth::runtime::firewall::remove(&installation);
    println!(
        "berth: removed {removed} host firewall rules and chains of installation {installation}"
    );
    Ok(())
}
