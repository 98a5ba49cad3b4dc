//! A whole sidecar process minus the process concerns: binds the configured proxy
//! listeners and the admin listener, serves them, and drains on shutdown.
//!
//! The binary's default command wraps this with signals and logging; tests, examples and
//! the demo can run a sidecar in-process the same way (port 0 picks free ports, and the
//! `*_addr` methods say which).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{self, Health};
use crate::budget::{MemoryBudget, host};
use crate::codec::tune::{Tuner, TunerConfig};
use crate::config::{ADMIN_LISTEN, CodecSetting, Config, INBOUND_LISTEN, OUTBOUND_LISTEN};
use crate::container::Limits;
use crate::layer::Role;
use crate::locate::Locator;
use crate::message::{Chooser, FixedChooser, MessageCodec};
use crate::metrics::Metrics;
use crate::proxy::{ListenerLimits, ProxySettings, RESERVED_DESCRIPTORS, ResolveSettings};
use crate::tls::{ClientTls, HopTls, ServerTls, TlsError};

/// A listener that could not be opened: one line naming the variable that set it.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The configuration variable of the listener.
    pub variable: &'static str,
    /// The address it asked for.
    pub addr: SocketAddr,
    /// Why the bind failed.
    #[source]
    pub source: io::Error,
}

/// Why a sidecar could not start: a TLS file that cannot be used (a configuration
/// error), or a listener that cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A certificate, key or CA file named by a `BLOSCAR_*_TLS_*` variable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener address.
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// A sidecar whose listeners are all bound, ready to serve.
pub struct Sidecar {
    proxies: Vec<(TcpListener, ProxySettings)>,
    admin: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    grace: Duration,
}

impl Sidecar {
    /// Reads the TLS files `config` names, then binds every listener it asks for (proxy
    /// roles first, then admin); fails on the first file or listener that cannot be used,
    /// before anything serves.
    pub async fn bind(config: &Config) -> Result<Sidecar, StartError> {
        // The files first: an unusable one is a configuration error, reported alone.
        let tls = [
            (Role::Inbound, hop_tls(config, Role::Inbound)?),
            (Role::Outbound, hop_tls(config, Role::Outbound)?),
        ];
        let mut metrics = Metrics::new();
        let chooser: Arc<dyn Chooser> = match config.codec {
            CodecSetting::Auto => {
                let tuner = tuner(config);
                metrics.register_collector(Box::new(tuner.collector()));
                tuner
            }
            CodecSetting::Fixed(_) => chooser(config),
        };
        let codec = Arc::new(message_codec(config, chooser));
        let memory = memory_budget(config);
        metrics.register_collector(Box::new(memory.collector()));
        let mut proxies = Vec::new();
        let mut planned = proxies_of(config, codec, &memory);
        for (_, _, settings) in &mut planned {
            if let Some((_, hop)) = tls.iter().find(|(role, _)| *role == settings.role) {
                settings.hop_tls = hop.clone();
            }
        }
        let max_connections = max_connections(config, planned.len());
        for (variable, addr, mut settings) in planned {
            settings.limits.max_connections = max_connections;
            proxies.push((bind(variable, addr).await?, settings));
        }
        let admin = bind(ADMIN_LISTEN.name, config.admin_listen).await?;
        Ok(Sidecar {
            proxies,
            admin,
            metrics: Arc::new(metrics),
            health: Arc::new(Health::new()),
            grace: config.shutdown_grace,
        })
    }

    /// The bound address of the listener serving `role`, if this sidecar runs it.
    pub fn proxy_addr(&self, role: Role) -> Option<SocketAddr> {
        self.proxies
            .iter()
            .find(|(_, settings)| settings.role == role)
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// The bound address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// The readiness the admin listener reports.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The metrics the proxies record and `/metrics` serves.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until `shutdown` resolves, then drains: readiness turns to 503, the proxy
    /// listeners stop accepting, and in-flight streams get the grace period to finish.
    /// Returns once every proxy listener has finished.
    ///
    /// If a proxy listener fails on its own, the others are drained the same way and its
    /// error is returned.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
        let (stop_proxies, proxies_stopping) = watch::channel(false);
        let (stop_admin, admin_stopping) = watch::channel(false);

        let metrics = self.metrics.clone();
        let admin = tokio::spawn(admin::serve(
            self.admin,
            self.health.clone(),
            move || metrics.render(),
            stopped(admin_stopping),
        ));

        let mut proxies = JoinSet::new();
        for (listener, settings) in self.proxies {
            let role = settings.role;
            let metrics = self.metrics.clone();
            let stopping = stopped(proxies_stopping.clone());
            let grace = self.grace;
            proxies.spawn(async move {
                let result =
                    crate::proxy::serve(listener, settings, metrics, stopping, grace).await;
                (role, result)
            });
        }
        self.health.set_ready();
        tracing::info!("ready");

        let mut failure = None;
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            Some(ended) = proxies.join_next() => failure = Some(ended),
        }
        self.health.set_draining();
        tracing::info!(grace_secs = self.grace.as_secs(), "draining");
        let _ = stop_proxies.send(true);

        let mut result = Ok(());
        if let Some(ended) = failure {
            result = proxy_result(ended);
        }
        while let Some(ended) = proxies.join_next().await {
            if let (Err(e), Ok(())) = (proxy_result(ended), &result) {
                result = Err(e);
            }
        }
        let _ = stop_admin.send(true);
        let _ = admin.await;
        tracing::info!("stopped");
        result
    }
}

/// TLS on the hop side of `role`'s listener, from the files `config` names: the inbound
/// serves it, the outbound dials it. Off unless configured, or when the mode does not run
/// `role` (its files are not read).
pub fn hop_tls(config: &Config, role: Role) -> Result<HopTls, TlsError> {
    let tls = match role {
        Role::Inbound if !config.mode.runs_inbound() => HopTls::Off,
        Role::Outbound if !config.mode.runs_outbound() => HopTls::Off,
        Role::Inbound => match &config.inbound_tls {
            Some(tls) => HopTls::Serve(Arc::new(ServerTls::load(tls)?)),
            None => HopTls::Off,
        },
        Role::Outbound => match (&config.outbound_tls, &config.outbound_forward) {
            (Some(tls), Some(forward)) => HopTls::Dial(Arc::new(ClientTls::load(tls, forward)?)),
            _ => HopTls::Off,
        },
    };
    Ok(tls)
}

/// The chooser of the codec setting: `auto` is a new [`Tuner`] (see [`tuner`]); a fixed
/// setting applies to every tensor of at least the minimum size.
pub fn chooser(config: &Config) -> Arc<dyn Chooser> {
    match config.codec {
        CodecSetting::Auto => tuner(config),
        CodecSetting::Fixed(options) => Arc::new(FixedChooser {
            options,
            min_size: config.min_tensor_bytes,
        }),
    }
}

/// The auto-tuner for the configured link and minimum tensor size; share one per
/// process so that its picks are remembered across listeners.
pub fn tuner(config: &Config) -> Arc<Tuner> {
    Arc::new(Tuner::new(TunerConfig {
        link_mbps: config.link_mbps,
        min_size: config.min_tensor_bytes,
        ..TunerConfig::default()
    }))
}

/// The memory budget every listener of the process shares: `BLOSCAR_MEMORY_BUDGET`, or
/// half the container's memory limit, or 1 GiB without one. Logged at start-up.
pub fn memory_budget(config: &Config) -> MemoryBudget {
    let (bytes, origin) = match config.memory_budget {
        Some(bytes) => (bytes, "BLOSCAR_MEMORY_BUDGET".to_owned()),
        None => match host::default_budget() {
            (bytes, Some(limit)) => (bytes, format!("half the container limit of {limit} bytes")),
            (bytes, None) => (bytes, "no container limit found".to_owned()),
        },
    };
    let budget = MemoryBudget::new(bytes);
    tracing::info!(
        bytes = budget.capacity(),
        per_connection = 2 * budget.connection_share(),
        from = %origin,
        "memory budget"
    );
    budget
}

/// The message encoder/decoder the proxies share: the built-in and configured locators,
/// `chooser`, and the message size limit.
pub fn message_codec(config: &Config, chooser: Arc<dyn Chooser>) -> MessageCodec {
    let limits = Limits {
        max_message_size: config.max_message_bytes,
        ..Limits::default()
    };
    MessageCodec::new(Locator::new(config.ndarray_rules.clone()), chooser, limits)
}

/// The connection limit of each of `listeners` proxy listeners: `BLOSCAR_MAX_CONNECTIONS`,
/// lowered (with a warning when it was configured) to what the process's open-file limit leaves once the admin
/// listener's and the upstream connections' descriptors are set aside, so that the
/// admin listener keeps answering however many clients connect.
pub fn max_connections(config: &Config, listeners: usize) -> usize {
    let open_files = crate::proxy::open_file_limit();
    let limit = crate::proxy::connection_limit(config.max_connections, open_files, listeners);
    if limit < config.max_connections {
        // Only a limit someone asked for is worth a warning; the default is a ceiling,
        // and most machines' open-file limit sits below it.
        let asked = config.max_connections != ListenerLimits::DEFAULT_MAX_CONNECTIONS;
        let message = "BLOSCAR_MAX_CONNECTIONS lowered to fit the open-file limit; raise \
                       `ulimit -n` (RLIMIT_NOFILE) to allow more connections";
        let (configured, open_file_limit, reserved) =
            (config.max_connections, open_files, RESERVED_DESCRIPTORS);
        if asked {
            tracing::warn!(
                configured,
                limit,
                open_file_limit,
                reserved,
                listeners,
                "{message}"
            );
        } else {
            tracing::info!(
                configured,
                limit,
                open_file_limit,
                reserved,
                listeners,
                "{message}"
            );
        }
    }
    limit
}

/// The listener limits `config` asks for, before the open-file limit lowers the
/// connection limit ([`max_connections`]).
pub fn listener_limits(config: &Config) -> ListenerLimits {
    ListenerLimits {
        max_connections: config.max_connections,
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
    }
}

/// The proxy listeners to open: the variable that sets the listen address (for error
/// messages), the address, and the settings, sharing `codec` and `memory`.
pub fn proxies_of(
    config: &Config,
    codec: Arc<MessageCodec>,
    memory: &MemoryBudget,
) -> Vec<(&'static str, SocketAddr, ProxySettings)> {
    let mut out = Vec::new();
    let settings = |role: Role, forward: &String| ProxySettings {
        role,
        forward: forward.clone(),
        codec: Arc::clone(&codec),
        max_message_bytes: config.max_message_bytes,
        max_http_body_bytes: config.max_http_body_bytes,
        unknown_peer: config.unknown_peer,
        // The outbound's peer may be a headless Service; the inbound's app is local, and
        // its name (if any) is resolved the same way with the system's configuration.
        resolve: match role {
            Role::Outbound => ResolveSettings {
                interval: config.outbound_resolve_interval,
                nameserver: config.outbound_nameserver,
            },
            Role::Inbound => ResolveSettings::default(),
        },
        stream_idle_timeout: config.stream_idle_timeout,
        limits: listener_limits(config),
        memory: memory.clone(),
        hop_tls: HopTls::Off,
    };
    if config.mode.runs_inbound() {
        out.push((
            INBOUND_LISTEN.name,
            config.inbound_listen,
            settings(Role::Inbound, &config.inbound_forward),
        ));
    }
    // Validation guarantees a forward address for every role the mode runs.
    if let (true, Some(forward)) = (config.mode.runs_outbound(), &config.outbound_forward) {
        out.push((
            OUTBOUND_LISTEN.name,
            config.outbound_listen,
            settings(Role::Outbound, forward),
        ));
    }
    out
}

async fn bind(variable: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        variable,
        addr,
        source,
    })
}

/// Resolves once `rx` carries `true` (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A proxy task's outcome as an `io::Result`, logging failures with the role.
fn proxy_result(ended: Result<(Role, io::Result<()>), tokio::task::JoinError>) -> io::Result<()> {
    match ended {
        Ok((_, Ok(()))) => Ok(()),
        Ok((role, Err(e))) => {
            tracing::error!(%role, error = %e, "proxy listener failed");
            Err(e)
        }
        Err(e) => {
            tracing::error!(error = %e, "proxy listener task failed");
            Err(io::Error::other(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn message_codec_follows_the_size_and_rule_settings() {
        let c = config(&[
            ("BLOSCAR_MAX_MESSAGE_BYTES", "1MiB"),
            ("BLOSCAR_NDARRAY_RULES", "/acme.v1.Imaging/Denoise=1"),
        ]);
        let codec = message_codec(&c, chooser(&c));
        assert_eq!(codec.limits().max_message_size, 1 << 20);
        assert_eq!(codec.locator().rules().len(), 1);
    }

    #[test]
    fn listener_limits_default_to_the_proxys_defaults() {
        assert_eq!(listener_limits(&config(&[])), ListenerLimits::default());
        let c = config(&[
            ("BLOSCAR_MAX_CONNECTIONS", "5"),
            ("BLOSCAR_HANDSHAKE_TIMEOUT_SECS", "2"),
            ("BLOSCAR_CONNECTION_IDLE_TIMEOUT_SECS", "3"),
        ]);
        assert_eq!(
            listener_limits(&c),
            ListenerLimits {
                max_connections: 5,
                handshake_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(3),
            }
        );
        // A limit this low fits any open-file limit above the reserve.
        assert_eq!(max_connections(&c, 2), 5);
    }

    #[test]
    fn proxies_follow_the_mode() {
        let c = config(&[
            ("BLOSCAR_MODE", "both"),
            ("BLOSCAR_OUTBOUND_FORWARD", "peer:9440"),
        ]);
        let codec = Arc::new(message_codec(&c, chooser(&c)));
        let roles: Vec<Role> = proxies_of(&c, codec, &MemoryBudget::new(64 << 20))
            .iter()
            .map(|(_, _, settings)| settings.role)
            .collect();
        assert_eq!(roles, [Role::Inbound, Role::Outbound]);
    }
}
