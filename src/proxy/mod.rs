//! The sidecar: hyper HTTP/2 listeners and the upstream client around the bloscar layer.
//!
//! Contract:
//! `pub async fn serve(listener: tokio::net::TcpListener, settings: ProxySettings,
//!     metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>, grace: Duration) -> io::Result<()>`
//! serves until `shutdown` resolves, then stops accepting, sends GOAWAY, and returns once
//! in-flight streams finish or `grace` has passed.
