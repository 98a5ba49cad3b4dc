//! A simulated network link: a TCP relay throttled to a bandwidth in each direction, that
//! counts the bytes it carries.
//!
//! Each direction is a serial line shared by every connection: a chunk of n bytes may
//! leave only when the line has finished sending what came before it, and takes
//! n / bandwidth to send. A line that fell behind its schedule by less than [`SLACK`]
//! (a timer firing late) keeps the schedule, so timer granularity does not add up.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Largest piece sent at once: about a millisecond at 100 Mbit/s.
const CHUNK: usize = 16 * 1024;

/// How late a line may be on its schedule and still be considered busy rather than idle.
const SLACK: Duration = Duration::from_millis(5);

/// One direction of the link.
struct Line {
    bytes_per_sec: f64,
    /// When the line is free again.
    free_at: Mutex<Instant>,
    carried: AtomicU64,
}

impl Line {
    fn new(bytes_per_sec: f64) -> Self {
        Line {
            bytes_per_sec,
            free_at: Mutex::new(Instant::now()),
            carried: AtomicU64::new(0),
        }
    }

    /// Waits until `n` bytes have been "sent" on the line.
    async fn send(&self, n: usize) {
        let done = {
            let mut free_at = self.free_at.lock().await;
            let now = Instant::now();
            let start = if now > *free_at + SLACK {
                now
            } else {
                *free_at
            };
            *free_at = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
            *free_at
        };
        tokio::time::sleep_until(done).await;
        self.carried.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Bytes a link has carried in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// From the connecting side to the target.
    pub up: u64,
    /// From the target back.
    pub down: u64,
}

impl Carried {
    /// Both directions.
    pub fn total(self) -> u64 {
        self.up + self.down
    }

    /// What was carried since `earlier`.
    pub fn since(self, earlier: Carried) -> Carried {
        Carried {
            up: self.up - earlier.up,
            down: self.down - earlier.down,
        }
    }
}

/// A running link; dropping it does not stop it (the demo's runtime ends with the demo).
pub struct Link {
    addr: SocketAddr,
    up: Arc<Line>,
    down: Arc<Line>,
}

impl Link {
    /// Listens on `listener` and relays every connection to `target` at `mbps` Mbit/s
    /// in each direction.
    pub fn start(listener: TcpListener, target: SocketAddr, mbps: f64) -> io::Result<Link> {
        let bytes_per_sec = mbps * 1e6 / 8.0;
        let link = Link {
            addr: listener.local_addr()?,
            up: Arc::new(Line::new(bytes_per_sec)),
            down: Arc::new(Line::new(bytes_per_sec)),
        };
        let (up, down) = (link.up.clone(), link.down.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (up, down) = (up.clone(), down.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(pump(in_read, out_write, up), pump(out_read, in_write, down));
                });
            }
        });
        Ok(link)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes carried so far.
    pub fn carried(&self) -> Carried {
        Carried {
            up: self.up.carried.load(Ordering::Relaxed),
            down: self.down.carried.load(Ordering::Relaxed),
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    line: Arc<Line>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        line.send(n).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_and_counts_both_ways() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = vec![0u8; 100_000];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf[..50_000]).await.unwrap();
        });
        let link = Link::start(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            echo_addr,
            1000.0,
        )
        .unwrap();
        let mut client = TcpStream::connect(link.addr()).await.unwrap();
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut back = vec![0u8; 50_000];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(back, sent[..50_000]);
        assert_eq!(
            link.carried(),
            Carried {
                up: 100_000,
                down: 50_000
            }
        );
    }
}
