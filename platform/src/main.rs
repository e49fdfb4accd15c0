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
            let config = berth::config::Config::load(args)?;
            let _log_writer = berth::init_tracing(&config.log_filter);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(berth::serve(config))?;
            Ok(())
        }
    }
}
