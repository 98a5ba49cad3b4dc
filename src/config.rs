//! `BLOSCAR_*` environment configuration: one table of variables, parsed with `envy` from
//! an iterator of (name, value) pairs (so tests never touch the process environment),
//! then validated into a [`Config`].
//!
//! [`VARIABLES`] is the one table of every variable; the README's configuration table is
//! rendered from it by [`markdown_table`] and a test keeps the two identical. An invalid
//! value is reported as one line naming the variable and the values it accepts
//! ([`ConfigError`]). An empty value counts as unset, as Kubernetes manifests often
//! template optional variables to "".

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::codec::CompressOptions;
use crate::locate::TaggedRule;

pub mod tls;
pub use tls::{InboundTls, OutboundTls};

/// The prefix every variable shares.
pub const PREFIX: &str = "BLOSCAR_";

/// One configuration variable: its name, default, accepted values and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// Full name, e.g. `BLOSCAR_MODE`.
    pub name: &'static str,
    /// The value used when the variable is unset or empty, as a user would write it.
    pub default: &'static str,
    /// What the variable accepts; error messages quote it.
    pub accepts: &'static str,
    /// What the variable controls.
    pub meaning: &'static str,
}

const fn var(
    name: &'static str,
    default: &'static str,
    accepts: &'static str,
    meaning: &'static str,
) -> Variable {
    Variable {
        name,
        default,
        accepts,
        meaning,
    }
}

const MODE: Variable = var(
    "BLOSCAR_MODE",
    "inbound",
    "inbound, outbound or both",
    "which proxy roles this process runs",
);
/// `BLOSCAR_INBOUND_LISTEN`.
pub const INBOUND_LISTEN: Variable = var(
    "BLOSCAR_INBOUND_LISTEN",
    "0.0.0.0:9440",
    "ip:port",
    "inbound listener: the pod's service port that the peer sidecar connects to",
);
const INBOUND_FORWARD: Variable = var(
    "BLOSCAR_INBOUND_FORWARD",
    "127.0.0.1:8001",
    "host:port",
    "the local server app the inbound side forwards to",
);
/// `BLOSCAR_OUTBOUND_LISTEN`.
pub const OUTBOUND_LISTEN: Variable = var(
    "BLOSCAR_OUTBOUND_LISTEN",
    "127.0.0.1:9441",
    "ip:port",
    "outbound listener that the local client app connects to",
);
const OUTBOUND_FORWARD: Variable = var(
    "BLOSCAR_OUTBOUND_FORWARD",
    "(none; required for outbound and both)",
    "host:port",
    "the peer's inbound sidecar, e.g. a Kubernetes service name and port. A name that \
     resolves to several addresses (a headless Service: one per pod) spreads the calls \
     over them, each call to the less busy of two; see \
     [docs/kubernetes.md](docs/kubernetes.md#a-headless-service-balancing-per-call)",
);
const OUTBOUND_RESOLVE_INTERVAL_SECS: Variable = var(
    "BLOSCAR_OUTBOUND_RESOLVE_INTERVAL_SECS",
    "30",
    "whole seconds, 1 or more",
    "outbound: the forward name is resolved again once its answer's TTL has passed, but \
     at least this often (and at most once a second), so that pods that join or leave a \
     headless Service are seen",
);
const OUTBOUND_NAMESERVER: Variable = var(
    "BLOSCAR_OUTBOUND_NAMESERVER",
    "(the name servers of /etc/resolv.conf)",
    "ip or ip:port (port 53 if omitted)",
    "outbound: the DNS server the forward name is resolved with, instead of those of \
     /etc/resolv.conf (whose search domains and options still apply)",
);
pub(crate) const ADMIN_LISTEN: Variable = var(
    "BLOSCAR_ADMIN_LISTEN",
    "0.0.0.0:9449",
    "ip:port",
    "admin listener: /live, /ready, /metrics",
);
const CODEC: Variable = var(
    "BLOSCAR_CODEC",
    "auto",
    "auto, or codec[:level[:shuffle]] with codec blosclz, lz4, lz4hc, snappy, zlib or zstd, \
     level 0-9 (default 5), shuffle none, byte or bit (default byte), e.g. lz4:5:byte",
    "how tensors at or above the minimum size are compressed; auto lets the auto-tuner pick \
     a setting per tensor for the measured link ([docs/tuner.md](docs/tuner.md))",
);
const MIN_TENSOR_BYTES: Variable = var(
    "BLOSCAR_MIN_TENSOR_BYTES",
    "10240",
    "a size: bytes, or a number with KiB, MiB or GiB",
    "tensors smaller than this travel uncompressed",
);
const MAX_MESSAGE_BYTES: Variable = var(
    "BLOSCAR_MAX_MESSAGE_BYTES",
    "4294967295",
    "a size from 1 byte to 4 GiB - 1: bytes, or a number with KiB, MiB or GiB",
    "largest gRPC message accepted, after any decompression (messages stream through, \
     so the default is gRPC's own maximum); larger ones fail with RESOURCE_EXHAUSTED",
);
const MAX_HTTP_BODY_BYTES: Variable = var(
    "BLOSCAR_MAX_HTTP_BODY_BYTES",
    "268435456",
    "a size from 1 byte to 4 GiB - 1: bytes, or a number with KiB, MiB or GiB",
    "largest KServe v2 REST inference body (`POST /v2/models/{name}/infer`) held whole to \
     compress or restore it (its JSON header must be read before its tensors can be found); \
     a larger request fails with HTTP 413, a larger response passes as it is",
);
const MEMORY_BUDGET: Variable = var(
    "BLOSCAR_MEMORY_BUDGET",
    "(half the container's memory limit, else 1 GiB)",
    "a size of at least 8 MiB: bytes, or a number with KiB, MiB or GiB",
    "message bytes the sidecar may hold in flight, over all calls (half for each direction; \
     one downstream connection a quarter of it, at least 64 MiB). When it is used up, calls \
     stop reading until bytes move on; a message held whole that could never fit fails with \
     RESOURCE_EXHAUSTED. The default reads the cgroup limit (memory.max, or v1's \
     memory.limit_in_bytes); see [docs/sidecar.md#memory](docs/sidecar.md#memory)",
);
const UNKNOWN_PEER: Variable = var(
    "BLOSCAR_UNKNOWN_PEER",
    "identity",
    "identity or encode",
    "outbound: send identity until the peer advertises bloscar (identity), or encode from \
     the first call (encode)",
);
const LINK_MBPS: Variable = var(
    "BLOSCAR_LINK_MBPS",
    "measured",
    "measured, or a number above 0 (Mbit/s)",
    "bandwidth of the link between the sidecars, which the auto setting optimises for: \
     measured per peer from live calls, or fixed by this override",
);
const NDARRAY_RULES: Variable = var(
    "BLOSCAR_NDARRAY_RULES",
    "(empty)",
    "rules separated by ; each method[@request|@response]=field.path[:dtype=...][:name=...], \
     e.g. /acme.v1.Imaging/Denoise=1",
    "where ndarrays live in your own messages (rule syntax and examples: [docs/locators.md](docs/locators.md))",
);
const STREAM_IDLE_TIMEOUT_SECS: Variable = var(
    "BLOSCAR_STREAM_IDLE_TIMEOUT_SECS",
    "0",
    "whole seconds, 0 (off) or more",
    "end a gRPC call with DEADLINE_EXCEEDED once nothing has moved on it (no body bytes \
     either way, no headers) for this long. Off by default: a quiet call is legitimate \
     for as long as its client's deadline allows (a server thinking for minutes, a stream \
     idle between requests), and grpc-timeout is enforced anyway; set it (e.g. 600) to \
     bound how long stalled peers can hold streams",
);
const SHUTDOWN_GRACE_SECS: Variable = var(
    "BLOSCAR_SHUTDOWN_GRACE_SECS",
    "30",
    "whole seconds, 0 or more",
    "after SIGTERM or SIGINT, how long in-flight streams may take to finish",
);
const IO_THREADS: Variable = var(
    "BLOSCAR_IO_THREADS",
    "1",
    "a whole number from 1 to 64",
    "threads that serve the connections (Blosc work runs on its own threads, one per core, \
     whatever this is): one keeps every hand-over between a call's tasks on one thread, \
     which is cheapest per call; more help only when the connections keep one core busy",
);
const MAX_CONNECTIONS: Variable = var(
    "BLOSCAR_MAX_CONNECTIONS",
    "10000",
    "a whole number, 1 or more",
    "most client connections open at once on each proxy listener; lowered at start-up to \
     what the open-file limit (ulimit -n) leaves after descriptors kept for the admin \
     listener and upstream connections; a connection beyond it is closed at once",
);
const HANDSHAKE_TIMEOUT_SECS: Variable = var(
    "BLOSCAR_HANDSHAKE_TIMEOUT_SECS",
    "10",
    "whole seconds, 1 or more",
    "how long a new connection may take to send the HTTP/2 preface and SETTINGS (or an \
     HTTP/1 client each request's headers) before it is closed",
);
const CONNECTION_IDLE_TIMEOUT_SECS: Variable = var(
    "BLOSCAR_CONNECTION_IDLE_TIMEOUT_SECS",
    "300",
    "whole seconds, 1 or more",
    "a client connection with no call open for this long is closed (HTTP/2: with GOAWAY)",
);
const LOG: Variable = var(
    "BLOSCAR_LOG",
    "info",
    "a tracing filter, e.g. info or bloscar=debug,warn",
    "what is logged; info,bloscar::access=debug adds the access log, one line per gRPC call \
     (see [docs/sidecar.md#logs](docs/sidecar.md#logs))",
);
const LOG_FORMAT: Variable = var(
    "BLOSCAR_LOG_FORMAT",
    "text",
    "text or json",
    "log line format",
);

/// Every configuration variable, in documentation order.
pub const VARIABLES: &[Variable] = &[
    MODE,
    INBOUND_LISTEN,
    INBOUND_FORWARD,
    OUTBOUND_LISTEN,
    OUTBOUND_FORWARD,
    OUTBOUND_RESOLVE_INTERVAL_SECS,
    OUTBOUND_NAMESERVER,
    ADMIN_LISTEN,
    CODEC,
    MIN_TENSOR_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_HTTP_BODY_BYTES,
    MEMORY_BUDGET,
    UNKNOWN_PEER,
    LINK_MBPS,
    NDARRAY_RULES,
    STREAM_IDLE_TIMEOUT_SECS,
    SHUTDOWN_GRACE_SECS,
    IO_THREADS,
    MAX_CONNECTIONS,
    HANDSHAKE_TIMEOUT_SECS,
    CONNECTION_IDLE_TIMEOUT_SECS,
    tls::INBOUND_CERT,
    tls::INBOUND_KEY,
    tls::INBOUND_CLIENT_CA,
    tls::INBOUND_ALLOWED_SANS,
    tls::OUTBOUND_CA,
    tls::OUTBOUND_SERVER_NAME,
    tls::OUTBOUND_CERT,
    tls::OUTBOUND_KEY,
    LOG,
    LOG_FORMAT,
];

/// The variables as a Markdown table (the README's configuration table).
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | accepts | meaning |\n|---|---|---|---|\n");
    for v in VARIABLES {
        let default = if v.default.starts_with('(') {
            v.default.to_string()
        } else {
            format!("`{}`", v.default)
        };
        // A `|` inside a cell would end it.
        let cell = |text: &str| text.replace('|', "\\|");
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            v.name,
            cell(&default),
            cell(v.accepts),
            cell(v.meaning)
        ));
    }
    out
}

/// `text` (a variable's meaning) for a terminal: each Markdown link `[label](target)`
/// becomes its label, which names the file it points to (`--help` shows the same words
/// as the README's table, without the link syntax).
pub fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let link = after
            .find("](")
            .and_then(|mid| after[mid + 2..].find(')').map(|end| (mid, mid + 2 + end)));
        let Some((mid, end)) = link else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&after[..mid]);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Which proxy roles the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Beside a server app only.
    Inbound,
    /// Beside a client app only.
    Outbound,
    /// Both roles in one process (a pod that is both client and server, or a demo).
    Both,
}

impl Mode {
    /// Whether this mode runs the inbound role (beside a server app).
    pub fn runs_inbound(self) -> bool {
        matches!(self, Mode::Inbound | Mode::Both)
    }

    /// Whether this mode runs the outbound role (beside a client app).
    pub fn runs_outbound(self) -> bool {
        matches!(self, Mode::Outbound | Mode::Both)
    }
}

/// How the outbound side treats a peer whose capability it has not seen yet
/// (`BLOSCAR_UNKNOWN_PEER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownPeer {
    /// Send identity until a response advertises `bloscar` in `grpc-accept-encoding`.
    #[default]
    Identity,
    /// Encode from the first call (the peer is known to run a sidecar).
    Encode,
}

/// How tensors are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecSetting {
    /// Chosen per tensor by the tuner.
    Auto,
    /// One setting for every tensor at or above the minimum size.
    Fixed(CompressOptions),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The validated configuration of a bloscar process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Roles to run.
    pub mode: Mode,
    /// Inbound listener address.
    pub inbound_listen: SocketAddr,
    /// `host:port` of the local server app.
    pub inbound_forward: String,
    /// Outbound listener address.
    pub outbound_listen: SocketAddr,
    /// `host:port` of the peer's inbound sidecar; always set when the mode includes
    /// outbound.
    pub outbound_forward: Option<String>,
    /// Longest time between two resolutions of the outbound's forward name.
    pub outbound_resolve_interval: Duration,
    /// The DNS server for the outbound's forward name; `None`: those of
    /// `/etc/resolv.conf`.
    pub outbound_nameserver: Option<SocketAddr>,
    /// Admin listener address.
    pub admin_listen: SocketAddr,
    /// Compression setting.
    pub codec: CodecSetting,
    /// Tensors below this many bytes travel uncompressed.
    pub min_tensor_bytes: usize,
    /// Largest gRPC message buffered, after decompression.
    pub max_message_bytes: usize,
    /// Largest KServe v2 REST inference body held whole.
    pub max_http_body_bytes: usize,
    /// Message bytes held in flight at most; `None`: derived from the container's memory
    /// limit when the sidecar starts ([`crate::budget::host::default_budget`]).
    pub memory_budget: Option<usize>,
    /// Outbound treatment of a peer not yet known to run a sidecar.
    pub unknown_peer: UnknownPeer,
    /// Link bandwidth in Mbit/s for the auto setting; `None`: measured from live calls.
    pub link_mbps: Option<f64>,
    /// Tagged-ndarray rules: where tensors live in the user's own messages.
    pub ndarray_rules: Vec<TaggedRule>,
    /// How long a gRPC call may go without anything moving; `None`: no limit.
    pub stream_idle_timeout: Option<Duration>,
    /// Drain period after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Threads of the async runtime that serves the connections.
    pub io_threads: usize,
    /// Most client connections open at once per proxy listener, before the open-file
    /// limit lowers it.
    pub max_connections: usize,
    /// Time a new connection has to open (HTTP/2 preface and SETTINGS, or HTTP/1
    /// request headers).
    pub handshake_timeout: Duration,
    /// A connection with no call open for this long is closed.
    pub idle_timeout: Duration,
    /// TLS on the inbound listener; `None`: cleartext.
    pub inbound_tls: Option<InboundTls>,
    /// TLS to the peer sidecar; `None`: cleartext.
    pub outbound_tls: Option<OutboundTls>,
    /// tracing filter directives.
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// `BLOSCAR_*` names that are not configuration variables (typos, or Kubernetes
    /// service links of a service called `bloscar`); logged as a warning at start-up.
    pub ignored: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_vars(std::iter::empty()).expect("the defaults are valid")
    }
}

/// An invalid configuration value: prints as one line naming the variable and what it
/// accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{name}: invalid value {value:?}: expected {accepts}")]
    Invalid {
        /// The variable's full name.
        name: &'static str,
        /// The value as given.
        value: String,
        /// What the variable accepts.
        accepts: &'static str,
    },
    /// A variable required by another one's value.
    #[error("{name}: required when {because}: expected {accepts}")]
    Missing {
        /// The variable's full name.
        name: &'static str,
        /// Why it is required.
        because: &'static str,
        /// What the variable accepts.
        accepts: &'static str,
    },
    /// A tagged-ndarray rule that does not parse.
    #[error("{name}: {problem}: expected {accepts}")]
    Rule {
        /// The variable's full name.
        name: &'static str,
        /// Which rule is wrong and how.
        problem: String,
        /// What the variable accepts.
        accepts: &'static str,
    },
    /// Two listeners configured on the same address.
    #[error("{name}: {value} is also {other}'s address: each listener needs its own")]
    Conflict {
        /// The later variable's full name.
        name: &'static str,
        /// The shared address.
        value: SocketAddr,
        /// The earlier variable's full name.
        other: &'static str,
    },
    /// `envy` could not read the variables at all.
    #[error("BLOSCAR_*: {0}")]
    Env(String),
}

impl ConfigError {
    /// The variable at fault, for logs (`BLOSCAR_*` when `envy` could not say).
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::Invalid { name, .. }
            | ConfigError::Missing { name, .. }
            | ConfigError::Rule { name, .. }
            | ConfigError::Conflict { name, .. } => name,
            ConfigError::Env(_) => "BLOSCAR_*",
        }
    }
}

/// The variables as `envy` reads them: raw strings, validated afterwards so that each
/// error names its variable and the accepted values.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    mode: Option<String>,
    inbound_listen: Option<String>,
    inbound_forward: Option<String>,
    outbound_listen: Option<String>,
    outbound_forward: Option<String>,
    outbound_resolve_interval_secs: Option<String>,
    outbound_nameserver: Option<String>,
    admin_listen: Option<String>,
    codec: Option<String>,
    min_tensor_bytes: Option<String>,
    max_message_bytes: Option<String>,
    max_http_body_bytes: Option<String>,
    memory_budget: Option<String>,
    unknown_peer: Option<String>,
    link_mbps: Option<String>,
    ndarray_rules: Option<String>,
    stream_idle_timeout_secs: Option<String>,
    shutdown_grace_secs: Option<String>,
    io_threads: Option<String>,
    max_connections: Option<String>,
    handshake_timeout_secs: Option<String>,
    connection_idle_timeout_secs: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
}

impl Config {
    /// Reads the process environment (non-UTF-8 values are converted lossily, and then
    /// fail validation where they matter).
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(Config::env_vars())
    }

    /// Reads and validates the `BLOSCAR_*` pairs among `vars`; other names are ignored.
    pub fn from_vars<I>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, v)| k.starts_with(PREFIX) && !v.is_empty())
            .collect();
        let ignored = vars
            .iter()
            .filter(|(k, _)| !VARIABLES.iter().any(|v| v.name == k))
            .map(|(k, _)| k.clone())
            .collect();
        let tls: tls::RawTls = envy::prefixed(PREFIX)
            .from_iter(vars.clone())
            .map_err(|e| ConfigError::Env(e.to_string()))?;
        let raw: RawConfig = envy::prefixed(PREFIX)
            .from_iter(vars)
            .map_err(|e| ConfigError::Env(e.to_string()))?;
        Config::validate(raw, tls, ignored)
    }

    fn validate(
        raw: RawConfig,
        mut tls: tls::RawTls,
        ignored: Vec<String>,
    ) -> Result<Config, ConfigError> {
        let mode = parse(MODE, raw.mode, |s| match s {
            "inbound" => Some(Mode::Inbound),
            "outbound" => Some(Mode::Outbound),
            "both" => Some(Mode::Both),
            _ => None,
        })?;
        let inbound_listen = parse(INBOUND_LISTEN, raw.inbound_listen, |s| s.parse().ok())?;
        let inbound_forward = parse(INBOUND_FORWARD, raw.inbound_forward, host_port)?;
        let outbound_listen = parse(OUTBOUND_LISTEN, raw.outbound_listen, |s| s.parse().ok())?;
        let outbound_forward = match raw.outbound_forward {
            Some(value) => Some(parse(OUTBOUND_FORWARD, Some(value), host_port)?),
            None if mode != Mode::Inbound => {
                return Err(ConfigError::Missing {
                    name: OUTBOUND_FORWARD.name,
                    because: "BLOSCAR_MODE is outbound or both",
                    accepts: OUTBOUND_FORWARD.accepts,
                });
            }
            None => None,
        };
        let outbound_resolve_interval = parse(
            OUTBOUND_RESOLVE_INTERVAL_SECS,
            raw.outbound_resolve_interval_secs,
            positive_secs,
        )?;
        let outbound_nameserver = match raw.outbound_nameserver {
            None => None,
            Some(value) => Some(parse(OUTBOUND_NAMESERVER, Some(value), nameserver)?),
        };
        let admin_listen = parse(ADMIN_LISTEN, raw.admin_listen, |s| s.parse().ok())?;
        let codec = parse(CODEC, raw.codec, |s| match s {
            "auto" => Some(CodecSetting::Auto),
            _ => s.parse().ok().map(CodecSetting::Fixed),
        })?;
        let min_tensor_bytes = parse(MIN_TENSOR_BYTES, raw.min_tensor_bytes, parse_size)?;
        let max_message_bytes = parse(MAX_MESSAGE_BYTES, raw.max_message_bytes, |s| {
            parse_size(s).filter(|&n| (1..=u32::MAX as usize).contains(&n))
        })?;
        let max_http_body_bytes = parse(MAX_HTTP_BODY_BYTES, raw.max_http_body_bytes, |s| {
            parse_size(s).filter(|&n| (1..=u32::MAX as usize).contains(&n))
        })?;
        let memory_budget = match raw.memory_budget {
            None => None,
            Some(value) => Some(parse(MEMORY_BUDGET, Some(value), |s| {
                parse_size(s).filter(|&n| n >= crate::budget::MIN_BUDGET)
            })?),
        };
        let unknown_peer = parse(UNKNOWN_PEER, raw.unknown_peer, |s| match s {
            "identity" => Some(UnknownPeer::Identity),
            "encode" => Some(UnknownPeer::Encode),
            _ => None,
        })?;
        let link_mbps = parse(LINK_MBPS, raw.link_mbps, |s| match s {
            "measured" => Some(None),
            s => s
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(Some),
        })?;
        let ndarray_rules = match raw.ndarray_rules {
            None => Vec::new(),
            Some(value) => TaggedRule::parse_list(&value).map_err(|e| ConfigError::Rule {
                name: NDARRAY_RULES.name,
                problem: e.to_string(),
                accepts: NDARRAY_RULES.accepts,
            })?,
        };
        let stream_idle_timeout = parse(
            STREAM_IDLE_TIMEOUT_SECS,
            raw.stream_idle_timeout_secs,
            |s| {
                s.parse::<u64>()
                    .ok()
                    .map(|secs| (secs > 0).then(|| Duration::from_secs(secs)))
            },
        )?;
        let shutdown_grace = parse(SHUTDOWN_GRACE_SECS, raw.shutdown_grace_secs, |s| {
            s.parse::<u64>().ok().map(Duration::from_secs)
        })?;
        let io_threads = parse(IO_THREADS, raw.io_threads, |s| {
            s.parse::<usize>().ok().filter(|n| (1..=64).contains(n))
        })?;
        let max_connections = parse(MAX_CONNECTIONS, raw.max_connections, |s| {
            s.parse::<usize>().ok().filter(|&n| n >= 1)
        })?;
        let handshake_timeout = parse(
            HANDSHAKE_TIMEOUT_SECS,
            raw.handshake_timeout_secs,
            positive_secs,
        )?;
        let idle_timeout = parse(
            CONNECTION_IDLE_TIMEOUT_SECS,
            raw.connection_idle_timeout_secs,
            positive_secs,
        )?;
        let inbound_tls = tls.inbound()?;
        let outbound_tls = tls.outbound()?;
        let log = parse(LOG, raw.log, parse_log_filter)?;
        let log_format = parse(LOG_FORMAT, raw.log_format, parse_log_format)?;

        let config = Config {
            mode,
            inbound_listen,
            inbound_forward,
            outbound_listen,
            outbound_forward,
            outbound_resolve_interval,
            outbound_nameserver,
            admin_listen,
            codec,
            min_tensor_bytes,
            max_message_bytes,
            max_http_body_bytes,
            memory_budget,
            unknown_peer,
            link_mbps,
            ndarray_rules,
            stream_idle_timeout,
            shutdown_grace,
            io_threads,
            max_connections,
            handshake_timeout,
            idle_timeout,
            inbound_tls,
            outbound_tls,
            log,
            log_format,
            ignored,
        };
        config.check_listeners_distinct()?;
        Ok(config)
    }

    /// The configuration to log with before the whole of it is validated: the defaults,
    /// with `BLOSCAR_LOG` and `BLOSCAR_LOG_FORMAT` from `vars` when they are valid. The
    /// binary sets up logging from it first, so that an invalid configuration is
    /// reported in the chosen log format (an invalid log variable itself falls back to
    /// its default here, and is then reported like any other).
    pub fn logging_from_vars<I>(vars: I) -> Config
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut config = Config::default();
        for (name, value) in vars {
            if value.is_empty() {
                continue;
            }
            if name == LOG.name {
                if let Ok(log) = parse(LOG, Some(value), parse_log_filter) {
                    config.log = log;
                }
            } else if name == LOG_FORMAT.name
                && let Ok(format) = parse(LOG_FORMAT, Some(value), parse_log_format)
            {
                config.log_format = format;
            }
        }
        config
    }

    /// The process environment as [`Config::from_env`] reads it, for
    /// [`Config::logging_from_vars`].
    pub fn env_vars() -> impl Iterator<Item = (String, String)> {
        std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
    }

    /// The listeners this configuration opens, with the variable that sets each one.
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut out = Vec::new();
        if self.mode.runs_inbound() {
            out.push((INBOUND_LISTEN.name, self.inbound_listen));
        }
        if self.mode.runs_outbound() {
            out.push((OUTBOUND_LISTEN.name, self.outbound_listen));
        }
        out.push((ADMIN_LISTEN.name, self.admin_listen));
        out
    }

    fn check_listeners_distinct(&self) -> Result<(), ConfigError> {
        let listeners = self.listeners();
        for (i, &(name, addr)) in listeners.iter().enumerate() {
            // Port 0 asks the kernel for a free port: never a clash.
            if addr.port() == 0 {
                continue;
            }
            if let Some(&(other, _)) = listeners[..i].iter().find(|(_, a)| *a == addr) {
                return Err(ConfigError::Conflict {
                    name,
                    value: addr,
                    other,
                });
            }
        }
        Ok(())
    }
}

/// Validates one variable: unset takes the default; `f` returns `None` for a value it
/// rejects.
fn parse<T>(
    v: Variable,
    value: Option<String>,
    f: impl Fn(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    let text = value.unwrap_or_else(|| v.default.to_string());
    match f(text.trim()) {
        Some(t) => Ok(t),
        None => Err(ConfigError::Invalid {
            name: v.name,
            value: text,
            accepts: v.accepts,
        }),
    }
}

/// A tracing filter (`BLOSCAR_LOG`).
fn parse_log_filter(s: &str) -> Option<String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .ok()
        .map(|_| s.to_string())
}

/// `BLOSCAR_LOG_FORMAT`.
fn parse_log_format(s: &str) -> Option<LogFormat> {
    match s {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}

/// `host:port` with a DNS name, an IPv4 address or a bracketed IPv6 address, and a port
/// from 1 to 65535. No scheme, no path.
fn host_port(s: &str) -> Option<String> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if port == 0 || host.is_empty() {
        return None;
    }
    let valid_host = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        host.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    };
    valid_host.then(|| s.to_string())
}

/// A name server: `ip:port`, `[ipv6]:port`, or an IP address alone for port 53.
fn nameserver(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            s.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .filter(|addr| addr.port() != 0)
}

/// Whole seconds, at least one.
fn positive_secs(s: &str) -> Option<Duration> {
    s.parse::<u64>()
        .ok()
        .filter(|&n| n >= 1)
        .map(Duration::from_secs)
}

/// A byte count: digits, optionally followed by B, KiB, MiB or GiB (case-insensitive).
fn parse_size(s: &str) -> Option<usize> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(digits_end);
    let n: usize = digits.parse().ok()?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

impl fmt::Display for CodecSetting {
    /// The setting as `BLOSCAR_CODEC` spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecSetting::Auto => f.write_str("auto"),
            CodecSetting::Fixed(options) => options.fmt(f),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Inbound => "inbound",
            Mode::Outbound => "outbound",
            Mode::Both => "both",
        })
    }
}

#[cfg(test)]
mod tests;
