//! The `berth-pack` binary: parses arguments, runs one command, maps the outcome to an exit
//! code (0 valid/success, 1 invalid input or rejected by the platform, 2 usage, IO,
//! connection or platform failure, 130/143 `pack` interrupted by SIGINT/SIGTERM). With
//! `--format json` every outcome, an interruption included, prints exactly one JSON document.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use berth_pack::cli::{CheckArgs, Cli, Command, DeployArgs, Format, PackArgs, SubscribeArgs};
use berth_pack::deploy::{self, DeployError, Step};
use berth_pack::platform_client::{PlatformClient, Target};
use berth_pack::tls_trust::Trust;
use berth_pack::{package, report, temp_cleanup, url_text};
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|error| usage_error(error));
    let outcome = match &cli.command {
        Command::Pack(args) => pack(args),
        Command::Validate(args) => check(args, false),
        Command::Inspect(args) => check(args, true),
        Command::Deploy(args) => deploy_package(args),
        Command::Subscribe(args) => subscribe(args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("berth-pack: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints clap's message (and help) as clap does, exiting 2 (0 for `--help`); when the command
/// line asked for `--format json`, a usage error also prints the command's failure document,
/// so a script reading stdout gets JSON for this outcome too.
fn usage_error(error: clap::Error) -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if error.use_stderr() && wants_json(&args) {
        // The message proper: what precedes the usage and the hint, on one line.
        let rendered = error.render().to_string();
        let message = rendered
            .lines()
            .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more"))
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let message = message.strip_prefix("error: ").unwrap_or(&message);
        let document = report::json_usage_failure(args.first().map(String::as_str), message);
        let _ = print_stdout(&format!("{document:#}\n"));
    }
    error.exit()
}

/// `--format json` or `--format=json` before any `--`.
fn wants_json(args: &[String]) -> bool {
    let args = args.iter().take_while(|arg| *arg != "--");
    let mut previous = "";
    for arg in args {
        if arg == "--format=json" || (previous == "--format" && arg == "json") {
            return true;
        }
        previous = arg;
    }
    false
}

fn pack(args: &PackArgs) -> anyhow::Result<u8> {
    // Not fatal: without the handler a signal merely leaves the temporary file, as before.
    if let Err(error) = report_interruption_on_signal(args.format, &args.manifest) {
        eprintln!("berth-pack: warning: no SIGINT/SIGTERM handler: {error}");
    }
    let options = args.to_options(std::io::stderr().is_terminal());
    let packed = package::pack(&options);
    // From here a signal no longer reports; if one already did, this waits for its exit.
    temp_cleanup::claim_report();
    match packed {
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

/// On SIGINT or SIGTERM, removes `pack`'s temporary output file, reports the interruption (with
/// `--format json` as the one document on stdout) and exits 130 or 143 (128 + the signal, as a
/// shell reports it). Without this the default action ends the process without running
/// destructors and the temporary file stays. The handlers are registered before this returns,
/// so no signal after it can slip past. Once the command has claimed the report (its output is
/// in place, or it failed), its report stands and a signal prints nothing: a second one ends the
/// process at once, should the report be stuck writing to a stdout nobody reads.
#[cfg(unix)]
fn report_interruption_on_signal(
    format: Format,
    manifest: &std::path::Path,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut interrupt, mut terminate) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let manifest = manifest.to_owned();
    std::thread::spawn(move || {
        runtime.block_on(async {
            let mut next = async || {
                tokio::select! {
                    _ = interrupt.recv() => ("SIGINT", 130),
                    _ = terminate.recv() => ("SIGTERM", 143),
                }
            };
            let (name, code) = next().await;
            // Held until exit: no rename into place and no other report can start after this.
            if let Some(interrupted) = temp_cleanup::interrupt() {
                eprintln!("berth-pack: interrupted");
                if format == Format::Json {
                    let document = report::json_interrupted(&manifest, name, &interrupted.partial);
                    let _ = print_stdout(&format!("{document:#}\n"));
                }
                std::process::exit(code);
            }
            let (_, code) = next().await;
            std::process::exit(code)
        })
    });
    Ok(())
}

/// Elsewhere the console's Ctrl-C ends the process as before.
#[cfg(not(unix))]
fn report_interruption_on_signal(_: Format, _: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

fn check(args: &CheckArgs, detailed: bool) -> anyhow::Result<u8> {
    match package::inspect(&args.file, args.limit.image_size_limit) {
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

/// Reads a `C8Y_*` fallback variable; unset and non-UTF-8 both count as absent.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn connect(target: &Target) -> Result<PlatformClient, DeployError> {
    if target.trust == Trust::Insecure {
        eprintln!(
            "berth-pack: WARNING: --insecure: the platform's TLS certificate is NOT verified; \
             anyone on the network path can read your password and replace the package"
        );
    }
    if url_text::is_cleartext_to_remote(&target.base_url) {
        eprintln!(
            "berth-pack: WARNING: {} is plain http:// to another host: your password crosses \
             the network unencrypted; use https:// unless this network is private",
            target.base_url
        );
    }
    Ok(PlatformClient::new(target)?)
}

/// The client for the platform the settings name; a settings error is a [`DeployError`] so it
/// is reported like any other failure (as JSON with `--format json`).
fn connect_to(platform: &berth_pack::cli::PlatformArgs) -> Result<PlatformClient, DeployError> {
    connect(&platform.to_target(env_var)?)
}

fn deploy_package(args: &DeployArgs) -> anyhow::Result<u8> {
    let options = args.to_options(std::io::stderr().is_terminal());
    let human = args.format == Format::Human;
    let package = options.package.display().to_string();
    let mut show = |step: Step| {
        if !human {
            return;
        }
        match step {
            Step::Validated { name, version } => {
                eprintln!("berth-pack: {package}: valid ({name} {version})")
            }
            Step::Found { id } => eprintln!("berth-pack: using existing application {id}"),
            Step::Created { id } => eprintln!("berth-pack: created application {id}"),
            Step::Uploaded { id, bytes } => eprintln!(
                "berth-pack: uploaded {} to application {id}",
                report::human_bytes(bytes)
            ),
            Step::Subscribed { tenant, already } => eprintln!(
                "berth-pack: tenant {tenant} {}",
                if already {
                    "was already subscribed"
                } else {
                    "subscribed"
                }
            ),
        }
    };
    let outcome =
        connect_to(&args.platform).and_then(|client| deploy::deploy(&client, &options, &mut show));
    match outcome {
        Ok(deployed) => {
            let text = match args.format {
                Format::Human => format!("{}\n", deployed.id),
                Format::Json => format!("{:#}\n", report::json_deployed(&deployed)),
            };
            print_stdout(&text)?;
            Ok(0)
        }
        Err(error) => report_platform_failure(args.format, &error),
    }
}

fn subscribe(args: &SubscribeArgs) -> anyhow::Result<u8> {
    let outcome = connect_to(&args.platform)
        .and_then(|client| deploy::subscribe(&client, &args.app, &args.tenant));
    match outcome {
        Ok(subscribed) => {
            let text = match args.format {
                Format::Human => format!(
                    "tenant {} {} application {}\n",
                    subscribed.tenant,
                    if subscribed.already {
                        "was already subscribed to"
                    } else {
                        "subscribed to"
                    },
                    subscribed.id
                ),
                Format::Json => format!("{:#}\n", report::json_subscribed(&subscribed)),
            };
            print_stdout(&text)?;
            Ok(0)
        }
        Err(error) => report_platform_failure(args.format, &error),
    }
}

fn report_platform_failure(format: Format, error: &DeployError) -> anyhow::Result<u8> {
    eprintln!("berth-pack: {error}");
    if let DeployError::Invalid(inspection) = error {
        eprint!("{}", report::human_validation(inspection));
    }
    if format == Format::Json {
        print_stdout(&format!("{:#}\n", report::json_deploy_failure(error)))?;
    }
    Ok(error.exit_code())
}
