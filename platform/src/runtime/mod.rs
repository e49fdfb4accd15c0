//! The container runtime: the only module that knows bollard. Images (load, tag, remove) and
//! the containers and networks of deployments, behind plain-data methods.

pub mod containers;
pub mod firewall;
pub mod images;
pub mod stats;

use std::path::Path;

use bollard::Docker;

/// Host name containers use for the platform (mapped to the Docker host by `extra_hosts`).
pub const PLATFORM_HOST: &str = "berth-platform";

/// Seconds a Docker call may take (image loads of large packages included).
const DOCKER_TIMEOUT_SECS: u64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach the Docker engine at {socket}: {message}")]
    Connect { socket: String, message: String },
    #[error("Docker: {0}")]
    Docker(String),
    #[error("the image archive was rejected by Docker: {0}")]
    Rejected(String),
}

impl From<bollard::errors::Error> for RuntimeError {
    fn from(err: bollard::errors::Error) -> RuntimeError {
        RuntimeError::Docker(err.to_string())
    }
}

/// A connection to the local Docker engine.
#[derive(Debug, Clone)]
pub struct Runtime {
    docker: Docker,
}

impl Runtime {
    /// Connects over the unix socket and negotiates the API version with the engine.
    pub async fn connect(socket: &Path) -> Result<Runtime, RuntimeError> {
        let display = socket.display().to_string();
        let fail = |message: String| RuntimeError::Connect {
            socket: display.clone(),
            message,
        };
        let docker =
            Docker::connect_with_unix(&display, DOCKER_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| fail(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(Runtime { docker })
    }
}
