use std::task::Poll;
use std::time::Duration;

use super::host::{CGROUP_V1_LIMIT, CGROUP_V2_MAX, budget_for_limit, container_limit};
use super::*;

const MIB: usize = 1 << 20;

/// Polls `account` once for a credit of `total` bytes.
async fn poll_once(account: &mut Account, total: usize) -> Poll<Result<(), BudgetError>> {
    std::future::poll_fn(|cx| Poll::Ready(account.poll_reserve(cx, total))).await
}

#[test]
fn sizes_follow_the_documented_rule() {
    let budget = MemoryBudget::new(512 * MIB);
    assert_eq!(budget.capacity(), 512 * MIB);
    // A quarter of the budget per connection, half of that per direction.
    assert_eq!(budget.connection_share(), 64 * MIB);
    let account = budget.account(Direction::Request, None);
    // Three quarters of a direction's half.
    assert_eq!(account.limit(), 192 * MIB);
    let connection = budget.connection();
    let account = budget.account(Direction::Request, Some(&connection));
    assert_eq!(account.limit(), 48 * MIB);

    // A small budget still gives a connection at least 64 MiB, but never more than all.
    let small = MemoryBudget::new(8 * MIB);
    assert_eq!(small.connection_share(), 4 * MIB);
    assert_eq!(MemoryBudget::new(1).capacity(), MIN_BUDGET);
    let large = MemoryBudget::new(4 << 30);
    assert_eq!(large.connection_share(), 512 * MIB);
}

#[test]
fn charges_are_counted_until_dropped() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut account = budget.account(Direction::Request, None);
    assert!(account.try_reserve(MIB).unwrap());
    assert_eq!(account.credit(), MIB);
    let mut first = account.take(MIB / 2);
    let second = first.split(MIB / 4);
    assert_eq!((first.bytes(), second.bytes()), (MIB / 4, MIB / 4));
    assert_eq!(budget.stats().in_use, MIB);
    drop(second);
    assert_eq!(budget.stats().in_use, MIB * 3 / 4);
    first.merge(account.take(usize::MAX));
    assert_eq!(first.bytes(), MIB * 3 / 4);
    assert_eq!(account.credit(), 0);
    drop(first);
    let stats = budget.stats();
    assert_eq!((stats.in_use, stats.peak, stats.waits), (0, MIB, 0));
}

#[test]
fn shedding_gives_back_the_credit_above_what_is_kept() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut account = budget.account(Direction::Response, None);
    assert!(account.try_reserve(2 * MIB).unwrap());
    account.shed_to(MIB / 2);
    assert_eq!(account.credit(), MIB / 2);
    assert_eq!(budget.stats().in_use, MIB / 2);
    drop(account);
    assert_eq!(budget.stats().in_use, 0);
}

#[test]
fn each_direction_has_its_own_half() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut requests = budget.account(Direction::Request, None);
    let mut more_requests = budget.account(Direction::Request, None);
    let mut responses = budget.account(Direction::Response, None);
    assert!(requests.try_reserve(3 * MIB).unwrap());
    assert!(!more_requests.try_reserve(2 * MIB).unwrap());
    assert!(more_requests.try_reserve(MIB).unwrap());
    assert!(responses.try_reserve(3 * MIB).unwrap());
    assert_eq!(budget.stats().in_use, 7 * MIB);
}

#[tokio::test]
async fn a_request_no_stream_may_hold_fails_at_once() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut account = budget.account(Direction::Request, None);
    let limit = account.limit();
    let outcome = poll_once(&mut account, limit + 1).await;
    assert_eq!(
        outcome,
        Poll::Ready(Err(BudgetError::TooLarge {
            need: limit + 1,
            limit
        }))
    );
    assert_eq!(budget.stats().too_large, 1);
    // What is already held counts towards the request: only the rest must fit.
    assert!(account.try_reserve(MIB).unwrap());
    assert_eq!(
        poll_once(&mut account, limit + 1).await,
        Poll::Ready(Ok(()))
    );
}

#[tokio::test]
async fn a_waiting_stream_gets_its_permits_once_others_release_theirs() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut holder = budget.account(Direction::Request, None);
    assert!(holder.try_reserve(3 * MIB).unwrap());
    let held = holder.take(3 * MIB);
    let mut waiter = budget.account(Direction::Request, None);
    assert!(poll_once(&mut waiter, 2 * MIB).await.is_pending());
    assert!(waiter.is_waiting());
    assert_eq!(budget.stats().waits, 1);
    drop(held);
    waiter.reserve(2 * MIB).await.unwrap();
    assert_eq!(waiter.credit(), 2 * MIB);
    assert!(!waiter.is_waiting());
    assert_eq!(budget.stats().in_use, 2 * MIB);
}

#[tokio::test]
async fn waiters_are_served_in_order() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut holder = budget.account(Direction::Request, None);
    assert!(holder.try_reserve(3 * MIB).unwrap());
    // The first waiter asks for more than is free; a later small request does not
    // overtake it.
    let mut large = budget.account(Direction::Request, None);
    assert!(poll_once(&mut large, 2 * MIB).await.is_pending());
    let mut small = budget.account(Direction::Request, None);
    assert!(poll_once(&mut small, MIB / 2).await.is_pending());
    holder.shed_to(0);
    large.reserve(2 * MIB).await.unwrap();
    small.reserve(MIB / 2).await.unwrap();
    assert_eq!(budget.stats().in_use, 2 * MIB + MIB / 2);
}

#[tokio::test]
async fn an_abandoned_wait_gives_back_what_it_had_been_assigned() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut holder = budget.account(Direction::Response, None);
    assert!(holder.try_reserve(3 * MIB).unwrap());
    let mut waiter = budget.account(Direction::Response, None);
    assert!(poll_once(&mut waiter, 3 * MIB).await.is_pending());
    drop(waiter);
    holder.shed_to(0);
    let mut next = budget.account(Direction::Response, None);
    assert!(next.try_reserve(3 * MIB).unwrap());
    assert_eq!(budget.stats().in_use, 3 * MIB);
}

#[tokio::test]
async fn a_wait_past_the_limit_fails() {
    let budget = MemoryBudget::new(8 * MIB).wait_limit(Duration::from_millis(20));
    let mut holder = budget.account(Direction::Request, None);
    assert!(holder.try_reserve(3 * MIB).unwrap());
    let mut waiter = budget.account(Direction::Request, None);
    let err = waiter.reserve(2 * MIB).await.unwrap_err();
    assert!(matches!(err, BudgetError::WaitLimit { need, .. } if need == 2 * MIB));
    assert_eq!(budget.stats().wait_limit, 1);
    assert_eq!(waiter.credit(), 0);
    assert_eq!(budget.stats().in_use, 3 * MIB);
}

#[test]
fn one_connection_cannot_take_more_than_its_share() {
    let budget = MemoryBudget::new(512 * MIB);
    let connection = budget.connection();
    let mut first = budget.account(Direction::Response, Some(&connection));
    let mut second = budget.account(Direction::Response, Some(&connection));
    assert!(first.try_reserve(48 * MIB).unwrap());
    assert!(!second.try_reserve(48 * MIB).unwrap());
    assert!(second.try_reserve(16 * MIB).unwrap());
    // Another connection, and the other direction of this one, are not affected.
    let other = budget.connection();
    let mut third = budget.account(Direction::Response, Some(&other));
    assert!(third.try_reserve(48 * MIB).unwrap());
    let mut requests = budget.account(Direction::Request, Some(&connection));
    assert!(requests.try_reserve(48 * MIB).unwrap());
    // A connection's charge leaves with its bytes.
    drop(first);
    assert!(second.try_reserve(64 * MIB).unwrap());
}

/// Polls `account` once for a hold of `bytes`.
async fn hold_once(account: &mut Account, bytes: usize) -> Poll<Result<Hold, BudgetError>> {
    std::future::poll_fn(|cx| Poll::Ready(account.poll_hold(cx, bytes))).await
}

#[tokio::test]
async fn messages_held_whole_share_a_quarter() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut a = budget.account(Direction::Request, None);
    let mut b = budget.account(Direction::Request, None);
    // A quarter of the direction's 4 MiB.
    assert_eq!(a.hold_limit(), MIB);
    let Poll::Ready(Ok(first)) = hold_once(&mut a, MIB * 3 / 4).await else {
        panic!("a free quarter refused a hold");
    };
    assert_eq!(first.bytes(), MIB * 3 / 4);
    assert!(hold_once(&mut b, MIB / 2).await.is_pending());
    drop(first);
    let second = std::future::poll_fn(|cx| b.poll_hold(cx, MIB / 2))
        .await
        .unwrap();
    assert_eq!(second.bytes(), MIB / 2);
    // Holds stand for no memory of their own.
    assert_eq!(budget.stats().in_use, 0);
    let refused = hold_once(&mut a, MIB + 1).await;
    assert!(matches!(
        refused,
        Poll::Ready(Err(BudgetError::TooLarge { .. }))
    ));
    assert!(matches!(hold_once(&mut a, 0).await, Poll::Ready(Ok(_))));
}

/// Whether `account` hears, now, that some stream waits on its pools.
async fn pressed(account: &mut Account) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(account.poll_pressure(cx).is_ready())).await
}

#[tokio::test]
async fn idle_streams_hear_when_others_start_to_wait() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut idle = budget.account(Direction::Request, None);
    assert!(idle.try_reserve(3 * MIB).unwrap());
    assert!(!pressed(&mut idle).await);
    let mut waiter = budget.account(Direction::Request, None);
    assert!(poll_once(&mut waiter, 2 * MIB).await.is_pending());
    assert!(pressed(&mut idle).await);
    // Bytes kept while waiting share the quarter with messages held whole.
    assert!(idle.keep_while_waiting(MIB / 2));
    assert!(idle.is_keeping());
    assert!(!idle.keep_while_waiting(MIB));
    idle.stop_keeping();
    assert!(!idle.is_keeping());
    drop(waiter);
    assert!(!pressed(&mut idle).await);
    // The other direction's waits are not this pool's.
    let mut responses = budget.account(Direction::Response, None);
    assert!(responses.try_reserve(3 * MIB).unwrap());
    let mut other = budget.account(Direction::Response, None);
    assert!(poll_once(&mut other, 2 * MIB).await.is_pending());
    assert!(!pressed(&mut idle).await);
}

#[test]
fn the_default_budget_is_half_the_container_limit() {
    let files = |v2: Option<&str>, v1: Option<&str>| {
        let (v2, v1) = (v2.map(str::to_owned), v1.map(str::to_owned));
        move |path: &str| match path {
            CGROUP_V2_MAX => v2.clone(),
            CGROUP_V1_LIMIT => v1.clone(),
            _ => None,
        }
    };
    assert_eq!(
        container_limit(files(Some("536870912\n"), None)),
        Some(512 << 20)
    );
    assert_eq!(container_limit(files(Some("max\n"), Some("1024"))), None);
    assert_eq!(
        container_limit(files(None, Some("1073741824"))),
        Some(1 << 30)
    );
    assert_eq!(
        container_limit(files(None, Some("9223372036854771712"))),
        None
    );
    assert_eq!(container_limit(files(None, None)), None);
    assert_eq!(container_limit(files(Some("garbage"), None)), None);

    assert_eq!(budget_for_limit(Some(512 << 20)), 256 * MIB);
    assert_eq!(budget_for_limit(Some(4 << 20)), MIN_BUDGET);
    assert_eq!(budget_for_limit(None), DEFAULT_BUDGET);
}

#[test]
fn the_collector_reports_the_budget() {
    let budget = MemoryBudget::new(8 * MIB);
    let mut registry = prometheus_client::registry::Registry::with_prefix("bloscar");
    registry.register_collector(Box::new(budget.collector()));
    let mut account = budget.account(Direction::Request, None);
    assert!(account.try_reserve(MIB).unwrap());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("bloscar_memory_budget_bytes 8388608"),
        "{text}"
    );
    assert!(
        text.contains("bloscar_memory_in_use_bytes 1048576"),
        "{text}"
    );
    assert!(text.contains("bloscar_memory_peak_bytes 1048576"), "{text}");
    assert!(text.contains("bloscar_memory_waits_total 0"), "{text}");
    assert!(text.contains("bloscar_memory_rejections_total{reason=\"too_large\"} 0"));
}
