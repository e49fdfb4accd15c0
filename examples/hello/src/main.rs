//! Example Berth microservice: a tiny actix-web server that shows what the platform gives a container.

mod burn;
mod check;
mod config;
mod platform_client;
mod probes;
mod routes;
mod streams;

use std::process::ExitCode;
use std::time::Duration;

use actix_web::{App, HttpServer};

use crate::config::Config;
use crate::routes::InjectedEnv;

/// How long in-flight requests may finish after SIGTERM before the workers are stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("hello: {err}");
            return ExitCode::from(2);
        }
    };
    // `hello check PATH`: the exec probe of a FROM-scratch image (see `check`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, path] = args.as_slice()
        && command == "check"
    {
        return check::run(config.listen.port(), path);
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hello: cannot serve: {err}");
            ExitCode::FAILURE
        }
    }
}

#[actix_web::main]
async fn serve(config: Config) -> std::io::Result<()> {
    let env = InjectedEnv::select(std::env::vars());
    let listen = config.listen;
    let workers = config.workers;
    let switch = actix_web::web::Data::new(probes::HealthSwitch::new(config.fail_health));
    let server = HttpServer::new(move || {
        App::new().configure(routes::configure(
            config.clone(),
            env.clone(),
            switch.clone(),
        ))
    })
    .workers(workers)
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .bind(listen)
    .map_err(|err| std::io::Error::new(err.kind(), format!("bind {listen}: {err}")))?;
    eprintln!("hello: listening on http://{listen} with {workers} worker(s)");
    // actix-server installs SIGTERM/SIGINT handlers, so `docker stop` drains in-flight requests and exits 0.
    server.run().await?;
    eprintln!("hello: stopped");
    Ok(())
}
