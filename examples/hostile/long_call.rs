//! A call longer than 5 minutes through the pair to a grpcio server whose handler sleeps
//! 330 s, then answers; the client sets no deadline, and nothing else flows. It must
//! succeed. grpc-core servers answer a client that pings more often than every 5 minutes
//! while no data flows with GOAWAY `too_many_pings`, so this checks that the inbound
//! keeps its upstream connection alive in a way such servers accept, and that the
//! sidecars' connection idle timeout (300 s) does not take a silent call for an idle
//! connection.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::case::Target;
use crate::raw::{Connection, call, frame, head, status_name};
use crate::tensors::smooth_fp32;

/// How long the server's handler sleeps by default.
pub const DEFAULT_SLEEP: Duration = Duration::from_secs(330);
/// The server script, beside this file.
const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/hostile/slow_grpc_server.py"
);
const PATH: &str = "/hostile.Slow/Wait";

/// The grpcio server process.
pub struct GrpcioServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl GrpcioServer {
    /// Starts the server with `python` (an interpreter that has grpcio).
    pub fn start(python: &Path) -> Result<GrpcioServer, String> {
        let mut child = Command::new(python)
            .arg(SERVER)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("read the server's port: {e}"))?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("the server printed {line:?}, not a port"))?;
        Ok(GrpcioServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

impl Drop for GrpcioServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call whose handler sleeps `target.duration`.
pub async fn run(target: Target) -> Vec<String> {
    let sleep = target.duration;
    let connection = match Connection::open(target.outbound, 4 << 20, 16 << 20).await {
        Ok(c) => c,
        Err(e) => return vec![format!("could not connect: {e}")],
    };
    let body = frame(false, &smooth_fp32(1 << 10, 11));
    let seconds = sleep.as_secs().to_string();
    let head = head(
        &target.outbound.to_string(),
        PATH,
        &[("x-sleep-secs", &seconds)],
    );
    let start = Instant::now();
    let answer = tokio::time::timeout(
        sleep + Duration::from_secs(50),
        call(&connection.send, head, body.clone()),
    )
    .await;
    let took = start.elapsed().as_secs_f64();
    let outcome = match answer {
        Err(_) => format!("**no answer after {took:.0} s**"),
        Ok(Err(e)) => format!("**failed after {took:.1} s: {e}**"),
        Ok(Ok(a)) if a.status == Some(0) && a.body == body => {
            format!("OK after {took:.1} s, the answer equal to the request")
        }
        Ok(Ok(a)) if a.status == Some(0) => {
            format!("**OK after {took:.1} s but the answer differs**")
        }
        Ok(Ok(a)) => format!("**{} after {took:.1} s**", status_name(a.status)),
    };
    vec![format!(
        "one call without a deadline to a grpcio server whose handler sleeps {} s, nothing \
         else on the connections: {outcome}",
        sleep.as_secs()
    )]
}
