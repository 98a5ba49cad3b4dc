//! The `bloscar` binary under a low open-file limit (`ulimit -n`): the proxy listener's
//! connection limit leaves descriptors for the admin listener, so that once the proxy
//! refuses connections, `/live`, `/ready` and `/metrics` still answer.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bloscar::proxy::{ListenerLimits, connection_limit};
use common::http1::get;
use common::metric_value;
use common::opening::{Reception, open_h2};
use common::process::{BIN, PATIENCE, Process, free_addr};
use http::StatusCode;

/// The open-file limit the sidecar runs under.
const OPEN_FILES: u64 = 128;

/// The binary, started through `sh` with a lowered `ulimit -n`; killed when dropped.
fn start_limited(env: &[(&str, String)]) -> Process {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {OPEN_FILES} && exec \"$0\""))
        .arg(BIN)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    Process::spawn(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_file_limit_the_proxy_refuses_and_the_admin_answers() {
    // (128 - 64 reserved) / 2 descriptors per connection.
    let limit = connection_limit(ListenerLimits::DEFAULT_MAX_CONNECTIONS, Some(OPEN_FILES), 1);
    assert_eq!(limit, 32);
    let inbound = free_addr();
    let admin = free_addr();
    let sidecar = start_limited(&[
        ("BLOSCAR_INBOUND_LISTEN", inbound.to_string()),
        ("BLOSCAR_ADMIN_LISTEN", admin.to_string()),
        // Nothing is forwarded: the connections only open.
        ("BLOSCAR_INBOUND_FORWARD", "127.0.0.1:9".into()),
        // Nothing closes the connections while the test holds them.
        ("BLOSCAR_HANDSHAKE_TIMEOUT_SECS", "600".into()),
        ("BLOSCAR_CONNECTION_IDLE_TIMEOUT_SECS", "600".into()),
        ("BLOSCAR_LOG", "info".into()),
    ]);
    let start = Instant::now();
    while !matches!(get(admin, "/ready").await, Ok((StatusCode::OK, _))) {
        assert!(
            start.elapsed() < PATIENCE,
            "never ready:\n{}",
            sidecar.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Open connections until the proxy closes one instead of serving it.
    let mut served = Vec::new();
    loop {
        match open_h2(inbound).await {
            Reception::Served(stream) => served.push(stream),
            Reception::Closed => break,
        }
        assert!(served.len() <= limit, "more than {limit} served");
    }
    assert_eq!(served.len(), limit, "{}", sidecar.logs());

    // At the limit, every new proxy connection is closed, and the admin answers.
    for _ in 0..5 {
        assert!(!open_h2(inbound).await.is_served());
        assert_eq!(
            get(admin, "/live").await.unwrap(),
            (StatusCode::OK, "live\n".into())
        );
    }
    assert_eq!(
        get(admin, "/ready").await.unwrap(),
        (StatusCode::OK, "ready\n".into())
    );
    let (status, text) = get(admin, "/metrics").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        metric_value(&text, "bloscar_connections_open{listener=\"inbound\"}"),
        limit as f64
    );
    assert_eq!(
        metric_value(
            &text,
            "bloscar_connections_refused_total{listener=\"inbound\"}"
        ),
        6.0
    );

    // Said once each, not once per connection (read once the lines have crossed the pipe).
    let start = Instant::now();
    while !sidecar.logs().contains("at the connection limit") {
        assert!(start.elapsed() < PATIENCE, "{}", sidecar.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = sidecar.logs();
    assert_eq!(
        logs.matches("BLOSCAR_MAX_CONNECTIONS lowered to fit the open-file limit")
            .count(),
        1,
        "{logs}"
    );
    assert_eq!(logs.matches("at the connection limit").count(), 1, "{logs}");
    assert!(!logs.contains("accept failed"), "{logs}");
}
