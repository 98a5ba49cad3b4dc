//! A pair of real `bloscar` processes, outbound and inbound, on loopback, each with its
//! log in a file and, when a case asks, a lowered open-file limit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::metrics::Scrape;

/// A free loopback address (bound and released; the port is reused right away).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// How to start one sidecar.
#[derive(Clone, Default)]
pub struct Launch {
    /// `BLOSCAR_*` variables on top of the role's own.
    pub env: Vec<(String, String)>,
    /// The soft open-file limit to start it under (`ulimit -n`); None: inherited.
    pub open_files: Option<u64>,
}

/// One sidecar process.
pub struct Sidecar {
    role: &'static str,
    child: Child,
    /// The admin listener: /live, /ready, /metrics.
    pub admin: SocketAddr,
    /// Where its standard error (the log) goes.
    pub log: PathBuf,
}

impl Sidecar {
    fn start(role: &'static str, bloscar: &Path, launch: &Launch, log_dir: &Path) -> Sidecar {
        let admin = free_addr();
        let log = log_dir.join(format!("{role}.log"));
        let log_file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut command = match launch.open_files {
            // exec keeps the process id, so /proc and kill() reach bloscar itself.
            Some(limit) => {
                let mut sh = Command::new("/bin/sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\""))
                    .arg(bloscar);
                sh
            }
            None => Command::new(bloscar),
        };
        let child = command
            .env_clear()
            .env("BLOSCAR_ADMIN_LISTEN", admin.to_string())
            .env("BLOSCAR_LOG", "warn")
            // glibc's malloc as the container image sets it (see the Dockerfile).
            .env("MALLOC_ARENA_MAX", "2")
            .env("MALLOC_MMAP_THRESHOLD_", "1048576")
            .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bloscar.display()));
        Sidecar {
            role,
            child,
            admin,
            log,
        }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!(
                    "{} sidecar exited: {status}; see {}",
                    self.role,
                    self.log.display()
                );
            }
            if admin_get(self.admin, "/ready")
                .await
                .starts_with("HTTP/1.1 200")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} sidecar never became ready", self.role);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its metrics now (empty if the admin listener does not answer).
    pub async fn scrape(&self) -> Scrape {
        let response = admin_get(self.admin, "/metrics").await;
        Scrape::parse(response.split_once("\r\n\r\n").map_or("", |(_, body)| body))
    }

    /// Lines its log holds so far.
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log).map_or(0, |text| text.lines().count())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An outbound and an inbound sidecar in front of an app; clients call `listen`.
pub struct Pair {
    /// The outbound sidecar, which the clients call.
    pub outbound: Sidecar,
    /// The inbound sidecar, in front of the app.
    pub inbound: Sidecar,
    /// The outbound's proxy listener.
    pub listen: SocketAddr,
    /// The inbound's proxy listener (what a peer sidecar, or an attacker posing as
    /// one, connects to).
    pub inbound_listen: SocketAddr,
}

impl Pair {
    /// Starts both processes of `bloscar` in front of `app` and waits until both are
    /// ready; each log goes to `log_dir`.
    pub async fn start(
        bloscar: &Path,
        app: SocketAddr,
        outbound: &Launch,
        inbound: &Launch,
        log_dir: &Path,
    ) -> Pair {
        std::fs::create_dir_all(log_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_dir.display()));
        let inbound_listen = free_addr();
        let listen = free_addr();
        let with = |launch: &Launch, own: [(&str, String); 3]| Launch {
            env: own
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .chain(launch.env.iter().cloned())
                .collect(),
            open_files: launch.open_files,
        };
        let inbound_launch = with(
            inbound,
            [
                ("BLOSCAR_MODE", "inbound".into()),
                ("BLOSCAR_INBOUND_LISTEN", inbound_listen.to_string()),
                ("BLOSCAR_INBOUND_FORWARD", app.to_string()),
            ],
        );
        let outbound_launch = with(
            outbound,
            [
                ("BLOSCAR_MODE", "outbound".into()),
                ("BLOSCAR_OUTBOUND_LISTEN", listen.to_string()),
                ("BLOSCAR_OUTBOUND_FORWARD", inbound_listen.to_string()),
            ],
        );
        let mut inbound = Sidecar::start("inbound", bloscar, &inbound_launch, log_dir);
        let mut outbound = Sidecar::start("outbound", bloscar, &outbound_launch, log_dir);
        inbound.wait_ready().await;
        outbound.wait_ready().await;
        Pair {
            outbound,
            inbound,
            listen,
            inbound_listen,
        }
    }

    /// Both process ids, outbound first.
    pub fn pids(&self) -> [u32; 2] {
        [self.outbound.pid(), self.inbound.pid()]
    }
}

/// One bare HTTP/1.1 GET to an admin listener: the whole response, or "" on failure
/// (including no answer within 5 s).
pub async fn admin_get(admin: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        Some(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}
