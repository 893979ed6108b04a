//! Services under test: bound to `127.0.0.1:0` first, then served, so tests never race for
//! ports or sleep; and gRPC channels that wait until the service reports SERVING.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use kc_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Longest a test waits for a spawned service to report SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A service running inside the test process.
#[derive(Debug)]
pub struct SpawnedService {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The task serving it; resolves when the service stops.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl SpawnedService {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel to the service, once it reports SERVING.
    pub async fn channel(&self) -> Channel {
        ready_channel(&self.url()).await
    }
}

/// Binds `127.0.0.1:0` and runs `serve(listener)` on a task.
pub async fn spawn_service<F, Fut>(serve: F) -> SpawnedService
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(serve(listener));
    SpawnedService { addr, task }
}

/// Connects to `url` and waits (bounded) until its health check says SERVING.
pub async fn ready_channel(url: &str) -> Channel {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .expect("service url")
        .connect_timeout(Duration::from_secs(5));
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel.clone());
            if let Ok(response) = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                && response.into_inner().status == ServingStatus::Serving as i32
            {
                return channel;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "service at {url} did not report SERVING within {READY_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A service served in-process under its own shutdown signal, which can be stopped and
/// started again on the same port (to test what its callers do while it is down).
#[derive(Debug)]
pub struct Restartable {
    /// Where it listens; the same after a restart.
    pub addr: SocketAddr,
    /// Its shutdown signal, triggered by [`Restartable::stop`] and on drop.
    pub shutdown: Shutdown,
    /// The task serving it, until it is stopped.
    pub task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Restartable {
    /// Serves on `addr` (`127.0.0.1:0` for any port; a port still in use, by the same
    /// service just stopped, is retried for a while) and waits until it reports SERVING.
    pub async fn start<F, Fut>(addr: SocketAddr, serve: F) -> Self
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "bind {addr} within {READY_TIMEOUT:?}: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        Self::serve(listener, serve).await
    }

    /// Serves on `listener`, bound beforehand (so that its address could be given to other
    /// services first), and waits until it reports SERVING.
    pub async fn serve<F, Fut>(listener: TcpListener, serve: F) -> Self
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listener.local_addr().expect("local address");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(serve(listener, shutdown.clone()));
        let service = Self {
            addr,
            shutdown,
            task: Some(task),
        };
        ready_channel(&service.url()).await;
        service
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Triggers the shutdown and waits until the service stopped (its port is closed).
    pub async fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(READY_TIMEOUT, task)
                .await
                .expect("the service stops in time")
                .expect("the service task does not panic")
                .expect("the service stops cleanly");
        }
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}
