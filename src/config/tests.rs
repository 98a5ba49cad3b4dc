use super::*;
use crate::codec::{Codec, Shuffle};

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn error_line(pairs: &[(&str, &str)]) -> String {
    config(pairs).unwrap_err().to_string()
}

const OUTBOUND: (&str, &str) = ("BLOSCAR_OUTBOUND_FORWARD", "peer.ns.svc:9440");

#[test]
fn defaults_serve_an_inbound_sidecar() {
    let c = config(&[]).unwrap();
    assert_eq!(c.mode, Mode::Inbound);
    assert_eq!(c.inbound_listen, "0.0.0.0:9440".parse().unwrap());
    assert_eq!(c.inbound_forward, "127.0.0.1:8001");
    assert_eq!(c.outbound_listen, "127.0.0.1:9441".parse().unwrap());
    assert_eq!(c.outbound_forward, None);
    assert_eq!(c.admin_listen, "0.0.0.0:9449".parse().unwrap());
    assert_eq!(c.codec, CodecSetting::Auto);
    assert_eq!(c.min_tensor_bytes, 10 * 1024);
    assert_eq!(c.max_message_bytes, u32::MAX as usize);
    assert_eq!(c.max_http_body_bytes, 256 << 20);
    assert_eq!(c.memory_budget, None);
    assert_eq!(c.unknown_peer, UnknownPeer::Identity);
    assert_eq!(c.link_mbps, None);
    assert!(c.ndarray_rules.is_empty());
    assert_eq!(c.stream_idle_timeout, None);
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.max_connections, 10_000);
    assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.log, "info");
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(c.ignored.is_empty());
}

#[test]
fn every_documented_default_parses_to_the_default_config() {
    // Writing each default out explicitly yields the same configuration as leaving it
    // unset (the defaults in the table are the ones the code uses).
    let explicit: Vec<(&str, &str)> = VARIABLES
        .iter()
        .filter(|v| !v.default.starts_with('('))
        .map(|v| (v.name, v.default))
        .collect();
    let a = config(&explicit).unwrap();
    let b = config(&[]).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

#[test]
fn other_variables_are_not_read_and_unknown_bloscar_ones_are_reported() {
    let c = config(&[
        ("PATH", "/usr/bin"),
        ("MODE", "outbound"),
        ("BLOSCAR_CODE", "zstd"),
        ("BLOSCAR_PORT", "tcp://10.0.0.1:9440"),
    ])
    .unwrap();
    assert_eq!(c.mode, Mode::Inbound);
    assert_eq!(c.codec, CodecSetting::Auto);
    assert_eq!(c.ignored, vec!["BLOSCAR_CODE", "BLOSCAR_PORT"]);
}

#[test]
fn empty_values_count_as_unset() {
    let c = config(&[("BLOSCAR_CODEC", ""), ("BLOSCAR_OUTBOUND_FORWARD", "")]).unwrap();
    assert_eq!(c.codec, CodecSetting::Auto);
    assert_eq!(c.outbound_forward, None);
}

#[test]
fn mode() {
    assert_eq!(
        config(&[("BLOSCAR_MODE", "inbound")]).unwrap().mode,
        Mode::Inbound
    );
    let c = config(&[("BLOSCAR_MODE", "outbound"), OUTBOUND]).unwrap();
    assert_eq!(c.mode, Mode::Outbound);
    assert!(c.mode.runs_outbound() && !c.mode.runs_inbound());
    let c = config(&[("BLOSCAR_MODE", "both"), OUTBOUND]).unwrap();
    assert!(c.mode.runs_outbound() && c.mode.runs_inbound());
    assert_eq!(
        error_line(&[("BLOSCAR_MODE", "sidecar")]),
        "BLOSCAR_MODE: invalid value \"sidecar\": expected inbound, outbound or both"
    );
}

#[test]
fn outbound_forward_is_required_for_outbound_and_both() {
    for mode in ["outbound", "both"] {
        assert_eq!(
            error_line(&[("BLOSCAR_MODE", mode)]),
            "BLOSCAR_OUTBOUND_FORWARD: required when BLOSCAR_MODE is outbound or both: \
             expected host:port"
        );
    }
}

#[test]
fn forward_addresses_take_names_and_ip_addresses() {
    for good in [
        "peer.ns.svc.cluster.local:9440",
        "10.1.2.3:80",
        "[::1]:9440",
        "my_host-1:65535",
    ] {
        let c = config(&[
            ("BLOSCAR_MODE", "both"),
            ("BLOSCAR_OUTBOUND_FORWARD", good),
            ("BLOSCAR_INBOUND_FORWARD", good),
        ])
        .unwrap();
        assert_eq!(c.outbound_forward.as_deref(), Some(good));
        assert_eq!(c.inbound_forward, good);
    }
    for bad in [
        "peer",
        "peer:",
        ":9440",
        "peer:0",
        "peer:65536",
        "http://peer:9440",
        "peer:9440/path",
        "[::1:9440",
        "[nonsense]:9440",
        "pe er:1",
    ] {
        assert_eq!(
            error_line(&[
                ("BLOSCAR_MODE", "outbound"),
                ("BLOSCAR_OUTBOUND_FORWARD", bad)
            ]),
            format!("BLOSCAR_OUTBOUND_FORWARD: invalid value {bad:?}: expected host:port")
        );
        assert_eq!(
            error_line(&[("BLOSCAR_INBOUND_FORWARD", bad)]),
            format!("BLOSCAR_INBOUND_FORWARD: invalid value {bad:?}: expected host:port")
        );
    }
}

#[test]
fn listen_addresses_are_ip_and_port() {
    let c = config(&[
        ("BLOSCAR_MODE", "both"),
        OUTBOUND,
        ("BLOSCAR_INBOUND_LISTEN", "[::]:7000"),
        ("BLOSCAR_OUTBOUND_LISTEN", "127.0.0.1:7001"),
        ("BLOSCAR_ADMIN_LISTEN", "127.0.0.1:0"),
    ])
    .unwrap();
    assert_eq!(c.inbound_listen, "[::]:7000".parse().unwrap());
    assert_eq!(c.outbound_listen, "127.0.0.1:7001".parse().unwrap());
    assert_eq!(c.admin_listen, "127.0.0.1:0".parse().unwrap());
    for name in [
        "BLOSCAR_INBOUND_LISTEN",
        "BLOSCAR_OUTBOUND_LISTEN",
        "BLOSCAR_ADMIN_LISTEN",
    ] {
        for bad in ["localhost:9440", "9440", "0.0.0.0", "0.0.0.0:99999"] {
            assert_eq!(
                error_line(&[(name, bad)]),
                format!("{name}: invalid value {bad:?}: expected ip:port")
            );
        }
    }
}

#[test]
fn listeners_of_the_configured_roles_must_differ() {
    assert_eq!(
        error_line(&[
            ("BLOSCAR_MODE", "both"),
            OUTBOUND,
            ("BLOSCAR_INBOUND_LISTEN", "127.0.0.1:7000"),
            ("BLOSCAR_OUTBOUND_LISTEN", "127.0.0.1:7000"),
        ]),
        "BLOSCAR_OUTBOUND_LISTEN: 127.0.0.1:7000 is also BLOSCAR_INBOUND_LISTEN's address: \
         each listener needs its own"
    );
    assert_eq!(
        error_line(&[("BLOSCAR_ADMIN_LISTEN", "0.0.0.0:9440")]),
        "BLOSCAR_ADMIN_LISTEN: 0.0.0.0:9440 is also BLOSCAR_INBOUND_LISTEN's address: \
         each listener needs its own"
    );
    // The outbound listener is not opened in inbound mode, so it may coincide.
    config(&[("BLOSCAR_OUTBOUND_LISTEN", "0.0.0.0:9440")]).unwrap();
    // Port 0 lets the kernel choose distinct ports.
    config(&[
        ("BLOSCAR_MODE", "both"),
        OUTBOUND,
        ("BLOSCAR_INBOUND_LISTEN", "127.0.0.1:0"),
        ("BLOSCAR_OUTBOUND_LISTEN", "127.0.0.1:0"),
        ("BLOSCAR_ADMIN_LISTEN", "127.0.0.1:0"),
    ])
    .unwrap();
}

#[test]
fn codec() {
    let fixed = |s: &str| match config(&[("BLOSCAR_CODEC", s)]).unwrap().codec {
        CodecSetting::Fixed(o) => o,
        CodecSetting::Auto => panic!("{s} parsed as auto"),
    };
    let opts = |codec, level, shuffle| CompressOptions {
        codec,
        level,
        shuffle,
    };
    assert_eq!(fixed("lz4:5:byte"), opts(Codec::Lz4, 5, Shuffle::Byte));
    assert_eq!(fixed("zstd:1:bit"), opts(Codec::Zstd, 1, Shuffle::Bit));
    assert_eq!(
        fixed("blosclz:9:none"),
        opts(Codec::BloscLz, 9, Shuffle::None)
    );
    assert_eq!(fixed("lz4hc:0"), opts(Codec::Lz4Hc, 0, Shuffle::Byte));
    assert_eq!(fixed("snappy"), opts(Codec::Snappy, 5, Shuffle::Byte));
    assert_eq!(fixed("zlib:3"), opts(Codec::Zlib, 3, Shuffle::Byte));
    assert_eq!(
        config(&[("BLOSCAR_CODEC", "auto")]).unwrap().codec,
        CodecSetting::Auto
    );
    for bad in [
        "gzip",
        "lz4:10",
        "lz4:-1",
        "lz4:5:word",
        "lz4:5:byte:x",
        ":5",
    ] {
        assert_eq!(
            error_line(&[("BLOSCAR_CODEC", bad)]),
            format!(
                "BLOSCAR_CODEC: invalid value {bad:?}: expected auto, or codec[:level[:shuffle]] \
                 with codec blosclz, lz4, lz4hc, snappy, zlib or zstd, level 0-9 (default 5), \
                 shuffle none, byte or bit (default byte), e.g. lz4:5:byte"
            )
        );
    }
}

#[test]
fn sizes() {
    let min = |s: &str| {
        config(&[("BLOSCAR_MIN_TENSOR_BYTES", s)])
            .unwrap()
            .min_tensor_bytes
    };
    assert_eq!(min("0"), 0);
    assert_eq!(min("4096"), 4096);
    assert_eq!(min("16KiB"), 16 << 10);
    assert_eq!(min("2 MiB"), 2 << 20);
    assert_eq!(min("1gib"), 1 << 30);
    assert_eq!(min("100B"), 100);
    for bad in ["-1", "ten", "10KB", "1.5MiB", "KiB", "99999999999999999999"] {
        assert_eq!(
            error_line(&[("BLOSCAR_MIN_TENSOR_BYTES", bad)]),
            format!(
                "BLOSCAR_MIN_TENSOR_BYTES: invalid value {bad:?}: expected a size: bytes, or \
                 a number with KiB, MiB or GiB"
            )
        );
    }
    let max = |s: &str| {
        config(&[("BLOSCAR_MAX_MESSAGE_BYTES", s)])
            .unwrap()
            .max_message_bytes
    };
    assert_eq!(max("1"), 1);
    assert_eq!(max("4MiB"), 4 << 20);
    assert_eq!(max("4294967295"), u32::MAX as usize);
    for bad in ["0", "4GiB", "lots"] {
        assert_eq!(
            error_line(&[("BLOSCAR_MAX_MESSAGE_BYTES", bad)]),
            format!(
                "BLOSCAR_MAX_MESSAGE_BYTES: invalid value {bad:?}: expected a size from 1 \
                 byte to 4 GiB - 1: bytes, or a number with KiB, MiB or GiB"
            )
        );
    }
}

#[test]
fn memory_budget() {
    let budget = |s: &str| {
        config(&[("BLOSCAR_MEMORY_BUDGET", s)])
            .unwrap()
            .memory_budget
    };
    assert_eq!(budget("512MiB"), Some(512 << 20));
    assert_eq!(budget("8MiB"), Some(8 << 20));
    assert_eq!(budget("2GiB"), Some(2 << 30));
    assert_eq!(
        config(&[("BLOSCAR_MEMORY_BUDGET", "")])
            .unwrap()
            .memory_budget,
        None
    );
    for bad in ["1MiB", "8388607", "half", "-1"] {
        assert_eq!(
            error_line(&[("BLOSCAR_MEMORY_BUDGET", bad)]),
            format!(
                "BLOSCAR_MEMORY_BUDGET: invalid value {bad:?}: expected a size of at least \
                 8 MiB: bytes, or a number with KiB, MiB or GiB"
            )
        );
    }
}

#[test]
fn unknown_peer() {
    let peer = |s: &str| config(&[("BLOSCAR_UNKNOWN_PEER", s)]).unwrap().unknown_peer;
    assert_eq!(peer("identity"), UnknownPeer::Identity);
    assert_eq!(peer("encode"), UnknownPeer::Encode);
    assert_eq!(
        error_line(&[("BLOSCAR_UNKNOWN_PEER", "bloscar")]),
        "BLOSCAR_UNKNOWN_PEER: invalid value \"bloscar\": expected identity or encode"
    );
}

#[test]
fn link_mbps() {
    let link = |s: &str| config(&[("BLOSCAR_LINK_MBPS", s)]).unwrap().link_mbps;
    assert_eq!(link("100"), Some(100.0));
    assert_eq!(link("2.5"), Some(2.5));
    assert_eq!(link("measured"), None);
    for bad in ["0", "-5", "inf", "NaN", "fast"] {
        assert_eq!(
            error_line(&[("BLOSCAR_LINK_MBPS", bad)]),
            format!(
                "BLOSCAR_LINK_MBPS: invalid value {bad:?}: expected measured, or a number above 0 (Mbit/s)"
            )
        );
    }
}

#[test]
fn ndarray_rules() {
    let c = config(&[(
        "BLOSCAR_NDARRAY_RULES",
        "/acme.v1.Imaging/Denoise=1; /acme.v1.Imaging/Segment@response=3.2:dtype=uint8",
    )])
    .unwrap();
    let rules: Vec<String> = c.ndarray_rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        [
            "/acme.v1.Imaging/Denoise=1",
            "/acme.v1.Imaging/Segment@response=3.2:dtype=uint8"
        ]
    );
    let line = error_line(&[("BLOSCAR_NDARRAY_RULES", "/pkg.Svc/Call=tensor")]);
    assert!(
        line.starts_with("BLOSCAR_NDARRAY_RULES: ndarray rule \"/pkg.Svc/Call=tensor\": "),
        "{line}"
    );
    assert!(
        line.ends_with(
            ": expected rules separated by ; each \
             method[@request|@response]=field.path[:dtype=...][:name=...], \
             e.g. /acme.v1.Imaging/Denoise=1"
        ),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

#[test]
fn shutdown_grace() {
    let grace = |s: &str| {
        config(&[("BLOSCAR_SHUTDOWN_GRACE_SECS", s)])
            .unwrap()
            .shutdown_grace
    };
    assert_eq!(grace("0"), Duration::ZERO);
    assert_eq!(grace("120"), Duration::from_secs(120));
    for bad in ["-1", "1.5", "30s"] {
        assert_eq!(
            error_line(&[("BLOSCAR_SHUTDOWN_GRACE_SECS", bad)]),
            format!(
                "BLOSCAR_SHUTDOWN_GRACE_SECS: invalid value {bad:?}: expected whole seconds, \
                 0 or more"
            )
        );
    }
}

#[test]
fn stream_idle_timeout_is_off_at_zero() {
    let idle = |s: &str| {
        config(&[("BLOSCAR_STREAM_IDLE_TIMEOUT_SECS", s)])
            .unwrap()
            .stream_idle_timeout
    };
    assert_eq!(idle("0"), None);
    assert_eq!(idle("600"), Some(Duration::from_secs(600)));
    for bad in ["-1", "1.5", "10m", "off"] {
        assert_eq!(
            error_line(&[("BLOSCAR_STREAM_IDLE_TIMEOUT_SECS", bad)]),
            format!(
                "BLOSCAR_STREAM_IDLE_TIMEOUT_SECS: invalid value {bad:?}: expected whole \
                 seconds, 0 (off) or more"
            )
        );
    }
}

#[test]
fn connection_limit_and_timeouts() {
    let c = config(&[
        ("BLOSCAR_MAX_CONNECTIONS", "1"),
        ("BLOSCAR_HANDSHAKE_TIMEOUT_SECS", "1"),
        ("BLOSCAR_CONNECTION_IDLE_TIMEOUT_SECS", "86400"),
    ])
    .unwrap();
    assert_eq!(c.max_connections, 1);
    assert_eq!(c.handshake_timeout, Duration::from_secs(1));
    assert_eq!(c.idle_timeout, Duration::from_secs(86_400));
    for bad in ["0", "-1", "1.5", "lots"] {
        assert_eq!(
            error_line(&[("BLOSCAR_MAX_CONNECTIONS", bad)]),
            format!(
                "BLOSCAR_MAX_CONNECTIONS: invalid value {bad:?}: expected a whole number, 1 or more"
            )
        );
    }
    for name in [
        "BLOSCAR_HANDSHAKE_TIMEOUT_SECS",
        "BLOSCAR_CONNECTION_IDLE_TIMEOUT_SECS",
    ] {
        for bad in ["0", "-1", "1.5", "10s"] {
            assert_eq!(
                error_line(&[(name, bad)]),
                format!("{name}: invalid value {bad:?}: expected whole seconds, 1 or more")
            );
        }
    }
}

#[test]
fn log_filter_and_format() {
    let c = config(&[
        ("BLOSCAR_LOG", "bloscar=debug,warn"),
        ("BLOSCAR_LOG_FORMAT", "json"),
    ])
    .unwrap();
    assert_eq!(c.log, "bloscar=debug,warn");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(
        config(&[("BLOSCAR_LOG_FORMAT", "text")])
            .unwrap()
            .log_format,
        LogFormat::Text
    );
    assert_eq!(
        error_line(&[("BLOSCAR_LOG", "bloscar=loud")]),
        "BLOSCAR_LOG: invalid value \"bloscar=loud\": expected a tracing filter, e.g. info or \
         bloscar=debug,warn"
    );
    assert_eq!(
        error_line(&[("BLOSCAR_LOG_FORMAT", "logfmt")]),
        "BLOSCAR_LOG_FORMAT: invalid value \"logfmt\": expected text or json"
    );
}

#[test]
fn every_error_is_one_line() {
    let cases: &[&[(&str, &str)]] = &[
        &[("BLOSCAR_MODE", "x")],
        &[("BLOSCAR_MODE", "both")],
        &[("BLOSCAR_CODEC", "x")],
        &[("BLOSCAR_ADMIN_LISTEN", "0.0.0.0:9440")],
        &[("BLOSCAR_LOG", "a=b=c")],
    ];
    for pairs in cases {
        let line = error_line(pairs);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("BLOSCAR_"), "{line}");
    }
}

#[test]
fn every_variable_is_read() {
    // Each documented variable changes the configuration when set to a valid
    // non-default value (no variable in the table is silently unread).
    let samples = [
        ("BLOSCAR_MODE", "outbound"),
        ("BLOSCAR_INBOUND_LISTEN", "127.0.0.1:1"),
        ("BLOSCAR_INBOUND_FORWARD", "app:1"),
        ("BLOSCAR_OUTBOUND_LISTEN", "127.0.0.1:2"),
        ("BLOSCAR_OUTBOUND_FORWARD", "other:2"),
        ("BLOSCAR_OUTBOUND_RESOLVE_INTERVAL_SECS", "5"),
        ("BLOSCAR_OUTBOUND_NAMESERVER", "10.0.0.10"),
        ("BLOSCAR_ADMIN_LISTEN", "127.0.0.1:3"),
        ("BLOSCAR_CODEC", "zstd:1:bit"),
        ("BLOSCAR_MIN_TENSOR_BYTES", "1"),
        ("BLOSCAR_MAX_MESSAGE_BYTES", "2"),
        ("BLOSCAR_MAX_HTTP_BODY_BYTES", "1MiB"),
        ("BLOSCAR_MEMORY_BUDGET", "64MiB"),
        ("BLOSCAR_UNKNOWN_PEER", "encode"),
        ("BLOSCAR_LINK_MBPS", "10"),
        ("BLOSCAR_NDARRAY_RULES", "/a.B/C=1"),
        ("BLOSCAR_STREAM_IDLE_TIMEOUT_SECS", "60"),
        ("BLOSCAR_SHUTDOWN_GRACE_SECS", "1"),
        ("BLOSCAR_IO_THREADS", "2"),
        ("BLOSCAR_MAX_CONNECTIONS", "7"),
        ("BLOSCAR_HANDSHAKE_TIMEOUT_SECS", "2"),
        ("BLOSCAR_CONNECTION_IDLE_TIMEOUT_SECS", "3"),
        ("BLOSCAR_INBOUND_TLS_CERT", "/b/tls.crt"),
        ("BLOSCAR_INBOUND_TLS_KEY", "/b/tls.key"),
        ("BLOSCAR_INBOUND_TLS_CLIENT_CA", "/b/ca.crt"),
        ("BLOSCAR_INBOUND_TLS_ALLOWED_SANS", "b.example"),
        ("BLOSCAR_OUTBOUND_TLS_CA", "/b/peer-ca.crt"),
        ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", "b.example"),
        ("BLOSCAR_OUTBOUND_TLS_CERT", "/b/client.crt"),
        ("BLOSCAR_OUTBOUND_TLS_KEY", "/b/client.key"),
        ("BLOSCAR_LOG", "warn"),
        ("BLOSCAR_LOG_FORMAT", "json"),
    ];
    assert_eq!(samples.len(), VARIABLES.len());
    // TLS in full, so that each TLS variable can change alone and stay valid.
    let base = [
        ("BLOSCAR_OUTBOUND_FORWARD", "peer:1"),
        ("BLOSCAR_MODE", "both"),
        ("BLOSCAR_INBOUND_TLS_CERT", "/a/tls.crt"),
        ("BLOSCAR_INBOUND_TLS_KEY", "/a/tls.key"),
        ("BLOSCAR_INBOUND_TLS_CLIENT_CA", "/a/ca.crt"),
        ("BLOSCAR_INBOUND_TLS_ALLOWED_SANS", "a.example"),
        ("BLOSCAR_OUTBOUND_TLS_CA", "/a/peer-ca.crt"),
        ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", "a.example"),
        ("BLOSCAR_OUTBOUND_TLS_CERT", "/a/client.crt"),
        ("BLOSCAR_OUTBOUND_TLS_KEY", "/a/client.key"),
    ];
    let baseline = format!("{:?}", config(&base).unwrap());
    for (v, sample) in VARIABLES.iter().zip(samples) {
        assert_eq!(v.name, sample.0);
        let mut pairs = base.to_vec();
        pairs.retain(|(k, _)| *k != sample.0);
        pairs.push(sample);
        let changed = format!("{:?}", config(&pairs).unwrap());
        assert_ne!(changed, baseline, "{} is not read", sample.0);
    }
}

#[test]
fn the_nameserver_takes_an_address_with_or_without_port() {
    let ns = |v: &str| config(&[("BLOSCAR_OUTBOUND_NAMESERVER", v)]).map(|c| c.outbound_nameserver);
    assert_eq!(
        ns("10.0.0.10").unwrap(),
        Some("10.0.0.10:53".parse().unwrap())
    );
    assert_eq!(
        ns("127.0.0.1:5353").unwrap(),
        Some("127.0.0.1:5353".parse().unwrap())
    );
    assert_eq!(ns("[::1]:53").unwrap(), Some("[::1]:53".parse().unwrap()));
    for bad in ["dns.local", "10.0.0.10:0", "10.0.0.10:x"] {
        assert_eq!(
            ns(bad).unwrap_err().variable(),
            "BLOSCAR_OUTBOUND_NAMESERVER",
            "{bad}"
        );
    }
    let interval = |v: &str| {
        config(&[("BLOSCAR_OUTBOUND_RESOLVE_INTERVAL_SECS", v)])
            .map(|c| c.outbound_resolve_interval)
    };
    assert_eq!(interval("").unwrap(), Duration::from_secs(30));
    assert!(interval("0").is_err());
}

#[test]
fn plain_text_keeps_link_labels_only() {
    assert_eq!(
        plain_text("see [docs/sidecar.md#memory](docs/sidecar.md#memory) and [a](b)."),
        "see docs/sidecar.md#memory and a."
    );
    assert_eq!(plain_text("a [b] (c) [d"), "a [b] (c) [d");
    for v in VARIABLES {
        let text = plain_text(v.meaning);
        assert!(!text.contains("]("), "{}: {text}", v.name);
        assert!(!text.contains("table"), "{}: {text}", v.name);
    }
}

#[test]
fn logging_settings_are_read_alone_and_fall_back_to_their_defaults() {
    let vars = |pairs: &[(&str, &str)]| {
        Config::logging_from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    };
    let c = vars(&[
        ("BLOSCAR_LOG_FORMAT", "json"),
        ("BLOSCAR_LOG", "debug"),
        ("BLOSCAR_CODEC", "lz5"),
    ]);
    assert_eq!((c.log.as_str(), c.log_format), ("debug", LogFormat::Json));
    let c = vars(&[("BLOSCAR_LOG_FORMAT", "xml"), ("BLOSCAR_LOG", "[")]);
    assert_eq!((c.log.as_str(), c.log_format), ("info", LogFormat::Text));
    let c = vars(&[("BLOSCAR_LOG_FORMAT", " json "), ("BLOSCAR_LOG", "")]);
    assert_eq!((c.log.as_str(), c.log_format), ("info", LogFormat::Json));
}

#[test]
fn errors_name_their_variable() {
    let e = config(&[("BLOSCAR_CODEC", "lz5")]).unwrap_err();
    assert_eq!(e.variable(), "BLOSCAR_CODEC");
    let e = config(&[("BLOSCAR_MODE", "both")]).unwrap_err();
    assert_eq!(e.variable(), "BLOSCAR_OUTBOUND_FORWARD");
}

#[test]
fn readme_has_the_variable_table() {
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&markdown_table()),
        "README.md's configuration table differs from config::VARIABLES; paste this:\n{}",
        markdown_table()
    );
}

#[test]
fn example_env_files_are_valid_and_use_only_known_variables() {
    let files = [
        (
            "inbound.env",
            include_str!("../../config/inbound.env"),
            Mode::Inbound,
        ),
        (
            "outbound.env",
            include_str!("../../config/outbound.env"),
            Mode::Outbound,
        ),
        (
            "both.env",
            include_str!("../../config/both.env"),
            Mode::Both,
        ),
    ];
    for (file, text, mode) in files {
        let pairs: Vec<(String, String)> = text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (k, v) = line
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{file}: {line}"));
                (k.to_string(), v.to_string())
            })
            .collect();
        let c = Config::from_vars(pairs).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(c.mode, mode, "{file}");
        assert!(c.ignored.is_empty(), "{file}: {:?}", c.ignored);
    }
}

#[test]
fn codec_setting_displays_as_written() {
    for text in ["auto", "lz4:5:byte", "zstd:1:bit", "blosclz:9:none"] {
        let c = config(&[("BLOSCAR_CODEC", text)]).unwrap();
        assert_eq!(c.codec.to_string(), text);
    }
}
