//! Exports an image from the local Docker engine as a `docker save` tar stream
//! (`GET /images/{name}/get`). The only module that knows bollard.
//!
//! The async bollard stream runs on its own thread with a small tokio runtime and hands
//! chunks over a bounded channel, so callers get a plain blocking `Read` with backpressure
//! and memory stays flat whatever the image size.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;

/// Chunks buffered between the engine and the reader.
const CHANNEL_CHUNKS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine ({0}); is it running and is DOCKER_HOST right?")]
    Unreachable(String),
    #[error("the local Docker engine has no image {0:?} (see `docker images`)")]
    NoSuchImage(String),
    #[error("the Docker engine failed: {0}")]
    Engine(String),
}

impl DockerError {
    /// True when the user named something that does not exist (as opposed to an engine or
    /// connection failure).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, DockerError::NoSuchImage(_))
    }
}

/// A running export: read it to get the image tar.
pub struct DockerExport {
    chunks: Option<Receiver<io::Result<Bytes>>>,
    current: Bytes,
    worker: Option<JoinHandle<()>>,
}

/// Checks that `reference` exists in the local engine, then starts streaming its tar.
pub fn export_image(reference: &str) -> Result<DockerExport, DockerError> {
    let (ready_tx, ready_rx) = sync_channel::<Result<(), DockerError>>(1);
    let (chunk_tx, chunk_rx) = sync_channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let reference = reference.to_owned();
    let worker = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = ready_tx.send(Err(DockerError::Engine(format!(
                    "cannot start the async runtime: {error}"
                ))));
                return;
            }
        };
        runtime.block_on(async move {
            let docker = match connect().await {
                Ok(docker) => docker,
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            if let Err(error) = docker.inspect_image(&reference).await {
                let _ = ready_tx.send(Err(classify(error, &reference)));
                return;
            }
            if ready_tx.send(Ok(())).is_err() {
                return;
            }
            let mut stream = docker.export_image(&reference);
            while let Some(item) = stream.next().await {
                let item = item.map_err(|error| {
                    io::Error::other(format!("Docker export of {reference} failed: {error}"))
                });
                let failed = item.is_err();
                // A closed channel means the reader gave up (e.g. the image was rejected).
                if chunk_tx.send(item).is_err() || failed {
                    return;
                }
            }
        });
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(DockerExport {
            chunks: Some(chunk_rx),
            current: Bytes::new(),
            worker: Some(worker),
        }),
        Ok(Err(error)) => {
            let _ = worker.join();
            Err(error)
        }
        Err(_) => {
            let _ = worker.join();
            Err(DockerError::Engine(
                "the export thread stopped unexpectedly".to_owned(),
            ))
        }
    }
}

async fn connect() -> Result<Docker, DockerError> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(|error| DockerError::Unreachable(error.to_string()))?;
    docker
        .negotiate_version()
        .await
        .map_err(|error| DockerError::Unreachable(error.to_string()))
}

fn classify(error: bollard::errors::Error, reference: &str) -> DockerError {
    match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => DockerError::NoSuchImage(reference.to_owned()),
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            DockerError::Engine(message)
        }
        other => DockerError::Unreachable(other.to_string()),
    }
}

impl Read for DockerExport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            let Some(chunks) = &self.chunks else {
                return Ok(0);
            };
            match chunks.recv() {
                Ok(chunk) => self.current = chunk?,
                Err(_) => {
                    self.chunks = None;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl Drop for DockerExport {
    fn drop(&mut self) {
        // Closing the channel stops the export thread at its next chunk.
        self.chunks = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
