//! The `berth-pack` binary: parses arguments, runs one command, maps the outcome to an exit
//! code (0 valid/success, 1 invalid input, 2 usage or IO error).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use berth_pack::cli::{CheckArgs, Cli, Command, Format, PackArgs};
use berth_pack::{package, report};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Pack(args) => pack(args),
        Command::Validate(args) => check(args, false),
        Command::Inspect(args) => check(args, true),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("berth-pack: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn pack(args: &PackArgs) -> anyhow::Result<u8> {
    let options = args.to_options(std::io::stderr().is_terminal());
    match package::pack(&options) {
        Ok(packed) => {
            let text = match args.format {
                Format::Human => {
                    let origin = options.manifest.display().to_string();
                    eprint!("{}", report::human_diagnostics(&origin, &packed.warnings));
                    report::human_packed(&packed)
                }
                Format::Json => format!("{:#}\n", report::json_packed(&packed)),
            };
            print_stdout(&text)?;
            Ok(0)
        }
        Err(error) => {
            match args.format {
                Format::Human => {
                    eprintln!("berth-pack: {error}");
                    let origin = options.manifest.display().to_string();
                    eprint!(
                        "{}",
                        report::human_diagnostics(&origin, error.diagnostics())
                    );
                }
                Format::Json => print_stdout(&format!(
                    "{:#}\n",
                    report::json_failure(&options.manifest, &error)
                ))?,
            }
            Ok(error.exit_code())
        }
    }
}

fn check(args: &CheckArgs, detailed: bool) -> anyhow::Result<u8> {
    match package::inspect(&args.file) {
        Ok(inspection) => {
            let text = match (args.format, detailed) {
                (Format::Json, _) => format!("{:#}\n", report::json_inspection(&inspection)),
                (Format::Human, false) => report::human_validation(&inspection),
                (Format::Human, true) => report::human_inspection(&inspection),
            };
            print_stdout(&text)?;
            Ok(if inspection.is_valid() { 0 } else { 1 })
        }
        Err(error) => {
            match args.format {
                Format::Human => eprintln!("berth-pack: {error}"),
                Format::Json => {
                    print_stdout(&format!("{:#}\n", report::json_failure(&args.file, &error)))?
                }
            }
            Ok(error.exit_code())
        }
    }
}

fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
