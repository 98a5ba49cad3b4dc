//! A raw HTTP/2 server that takes gRPC calls and never finishes them, and reports what
//! became of each stream: the upstream a hung app makes, seen from the wire, so tests can
//! check that a sidecar giving up on a call really resets the app's stream.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Response};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the server saw of one call.
#[derive(Debug)]
pub enum Seen {
    /// A call arrived with these headers.
    Call(HeaderMap),
    /// Its stream was reset by the client with this reason.
    Reset(h2::Reason),
}

/// A running stalling server.
pub struct StallingServer {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl StallingServer {
    /// The next event, waiting at most 20 s so that a missing one fails the test
    /// instead of hanging it.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(std::time::Duration::from_secs(20), self.seen.recv())
            .await
            .expect("the stalling server saw nothing within 20 s")
            .expect("the stalling server stopped")
    }
}

/// Starts a server that answers nothing (`partial` is `None`), or sends response headers
/// and then `partial` (e.g. part of a message) and stalls; either way it never ends the
/// stream and never reads the request.
pub async fn start_stalling_server(partial: Option<Vec<u8>>) -> StallingServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tx, partial) = (tx.clone(), partial.clone());
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                // Accepting drives the connection; each call waits in its own task.
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let (tx, partial) = (tx.clone(), partial.clone());
                    tokio::spawn(async move {
                        let _ = tx.send(Seen::Call(request.headers().clone()));
                        let reason = match partial {
                            None => std::future::poll_fn(|cx| respond.poll_reset(cx)).await,
                            Some(bytes) => {
                                let response = Response::builder()
                                    .header("content-type", "application/grpc")
                                    .body(())
                                    .unwrap();
                                let mut send = respond.send_response(response, false).unwrap();
                                send.send_data(Bytes::from(bytes), false).unwrap();
                                std::future::poll_fn(|cx| send.poll_reset(cx)).await
                            }
                        };
                        if let Ok(reason) = reason {
                            let _ = tx.send(Seen::Reset(reason));
                        }
                        // The request is held until here: the stream stays open.
                        drop(request);
                    });
                }
            });
        }
    });
    StallingServer { addr, seen }
}
