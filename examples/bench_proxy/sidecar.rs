//! A pair of real `bloscar` processes, outbound and inbound, on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback address (bound and released; the port is reused right away).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// One sidecar process and its admin address.
pub struct Sidecar {
    name: &'static str,
    child: Child,
    /// The admin listener: /ready, /metrics.
    pub admin: SocketAddr,
}

impl Sidecar {
    fn start(name: &'static str, bloscar: &Path, env: &[(&str, String)]) -> Sidecar {
        let admin = free_addr();
        let child = Command::new(bloscar)
            .env_clear()
            .env("BLOSCAR_ADMIN_LISTEN", admin.to_string())
            .env("BLOSCAR_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bloscar.display()));
        Sidecar { name, child, admin }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("{} sidecar exited: {status}", self.name);
            }
            if admin_get(self.admin, "/ready")
                .await
                .starts_with("HTTP/1.1 200")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} sidecar never became ready", self.name);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An outbound and an inbound sidecar in front of `server`; clients call `listen`.
pub struct SidecarPair {
    /// The outbound sidecar, which the client calls.
    pub outbound: Sidecar,
    /// The inbound sidecar, in front of the server.
    pub inbound: Sidecar,
    /// The outbound listener.
    pub listen: SocketAddr,
}

impl SidecarPair {
    /// Starts both processes of `bloscar` with `env` added to each and waits until both
    /// are ready.
    pub async fn start(bloscar: &Path, server: SocketAddr, env: &[(&str, String)]) -> Self {
        let inbound_addr = free_addr();
        let listen = free_addr();
        let with = |own: Vec<(&'static str, String)>| -> Vec<(&str, String)> {
            own.into_iter().chain(env.iter().cloned()).collect()
        };
        let mut inbound = Sidecar::start(
            "inbound",
            bloscar,
            &with(vec![
                ("BLOSCAR_MODE", "inbound".into()),
                ("BLOSCAR_INBOUND_LISTEN", inbound_addr.to_string()),
                ("BLOSCAR_INBOUND_FORWARD", server.to_string()),
            ]),
        );
        let mut outbound = Sidecar::start(
            "outbound",
            bloscar,
            &with(vec![
                ("BLOSCAR_MODE", "outbound".into()),
                ("BLOSCAR_OUTBOUND_LISTEN", listen.to_string()),
                ("BLOSCAR_OUTBOUND_FORWARD", inbound_addr.to_string()),
            ]),
        );
        inbound.wait_ready().await;
        outbound.wait_ready().await;
        SidecarPair {
            outbound,
            inbound,
            listen,
        }
    }
}

/// One bare HTTP/1.1 GET to an admin listener: the whole response, or "" on failure.
pub async fn admin_get(admin: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// Message bytes of unary ModelInfer calls an outbound sidecar has seen so far, both
/// directions: (as the apps exchanged them, as they crossed between the sidecars).
pub async fn model_infer_bytes(outbound_admin: SocketAddr) -> (f64, f64) {
    let metrics = admin_get(outbound_admin, "/metrics").await;
    let sum = |family: &str| -> f64 {
        metrics
            .lines()
            .filter(|line| {
                line.starts_with(family)
                    && line.contains("method=\"/inference.GRPCInferenceService/ModelInfer\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("bloscar_message_identity_bytes_total{"),
        sum("bloscar_message_wire_bytes_total{"),
    )
}

/// The value of an unlabelled metric of a sidecar (`None` when it has no such metric,
/// e.g. a build without it).
pub async fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let metrics = admin_get(admin, "/metrics").await;
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
