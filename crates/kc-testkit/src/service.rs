//! Services under test: bound to `127.0.0.1:0` first, then served, so tests never race for
//! ports or sleep; and gRPC channels that wait until the service reports SERVING.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

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
