//! Dialing the upstream: a TCP connection to the configured address, then TLS when the
//! listener's hop is TLS (the outbound to a TLS peer sidecar).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;
use tower_service::Service;

use super::super::secure;
use crate::error::BoxError;
use crate::metrics::Metrics;
use crate::tls::{Alpn, ClientTls, HopStream};

/// TLS to the upstream, with the metrics its handshakes are counted in.
#[derive(Clone)]
pub struct DialTls {
    /// The client configuration (CA, server name, client certificate).
    pub client: Arc<ClientTls>,
    /// Where failed handshakes and reloads are counted (as `outbound`).
    pub metrics: Arc<Metrics>,
}

/// Connects to one configured address, with TLS if configured.
#[derive(Clone)]
pub(super) struct Dial {
    connector: HttpConnector,
    target: Uri,
    tls: Option<DialTls>,
}

/// The listener name TLS failures of dialed connections are counted under.
const LISTENER: &str = "outbound";

impl Dial {
    pub(super) fn new(connector: HttpConnector, target: Uri, tls: Option<DialTls>) -> Dial {
        Dial {
            connector,
            target,
            tls,
        }
    }

    /// The address dialed, for logs.
    pub(super) fn target(&self) -> &Uri {
        &self.target
    }

    /// A new connection for `alpn`'s protocol.
    pub(super) async fn connect(&self, alpn: Alpn) -> Result<HopStream, BoxError> {
        let tcp = self
            .connector
            .clone()
            .call(self.target.clone())
            .await?
            .into_inner();
        self.secure(tcp, alpn).await
    }

    /// `tcp`, a connection to the upstream, with TLS on it if the hop is TLS: the one
    /// step every way of dialing the peer shares (whichever of its addresses `tcp` goes
    /// to, the certificate is checked for the configured server name).
    pub(super) async fn secure(&self, tcp: TcpStream, alpn: Alpn) -> Result<HopStream, BoxError> {
        let Some(tls) = &self.tls else {
            return Ok(HopStream::Plain(tcp));
        };
        let (connector, reload) = tls.client.connector(alpn);
        secure::reloaded(reload, LISTENER, &tls.metrics, || tls.client.paths());
        match connector
            .connect(tls.client.server_name().clone(), tcp)
            .await
        {
            Ok(stream) => Ok(HopStream::from(TlsStream::Client(stream))),
            Err(err) => {
                secure::failed(&err, None, LISTENER, &tls.metrics);
                Err(err.into())
            }
        }
    }
}

impl Connection for HopStream {
    fn connected(&self) -> Connected {
        self.tcp().connected()
    }
}

/// The HTTP/1.1 client's connector: every request to the configured address, whatever
/// its URI says.
#[derive(Clone)]
pub struct FixedConnector {
    pub(super) dial: Dial,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Service<Uri> for FixedConnector {
    type Response = TokioIo<HopStream>;
    type Error = BoxError;
    type Future = BoxFuture<Result<TokioIo<HopStream>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let dial = self.dial.clone();
        Box::pin(async move { Ok(TokioIo::new(dial.connect(Alpn::Http1).await?)) })
    }
}
