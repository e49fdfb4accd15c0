//! `berth`: the hosting server binary. Parses the command line and configuration, then hands
//! over to the library ([`berth::serve`]).

use clap::Parser;

fn main() -> anyhow::Result<()> {
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
