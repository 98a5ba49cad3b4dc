//! The bloscar binary as a child process, for tests that run it as users do: its
//! standard error collected as it is written, signals sent, its exit awaited, and the
//! process killed if the test ends without waiting for it.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bloscar");

/// How long a test waits for the process to start, answer or exit before failing: long,
/// because a loaded CI machine is slow, and never reached by a process that works.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A free port on 127.0.0.1 (the kernel does not hand it out again at once).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The binary with nothing in its environment but its admin listener's address and
/// `env`.
pub fn sidecar_command(admin: SocketAddr, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("BLOSCAR_ADMIN_LISTEN", admin.to_string())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// A running process with its standard error collected.
pub struct Process {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Starts `command` with its standard output discarded and its standard error kept.
    pub fn spawn(mut command: Command) -> Process {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bloscar");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Process {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    /// What the process has written to its standard error so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends the signal `name` (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        // The shell's own `kill`, so that no procps package is needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{name} {}", self.child.id())])
            .status()
            .expect("run sh");
        assert!(status.success());
    }

    /// Panics with the logs if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("bloscar exited with {status}:\n{}", self.logs());
        }
    }

    /// Waits until `addr` accepts connections (the admin listener binds after the
    /// proxies): panics with the logs if the process exits or takes too long.
    pub async fn wait_listening(&mut self, addr: SocketAddr) {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            self.assert_running();
            assert!(
                start.elapsed() < PATIENCE,
                "never listened:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit, with every line the process wrote before it.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipe closes with the process: collect the last lines.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(start.elapsed() < PATIENCE, "never exited:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
