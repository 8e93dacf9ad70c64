//! Members of a fleet sharing streams through a real redis-server: each takes its
//! share, a newcomer gets streams handed over, a member that stops being heard from
//! has its streams taken over by the others.
#![cfg(feature = "redis")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use mirror_reconnect::redis::{Fleet, FleetSlot, LeaseManager, LeaseWatch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use support::redis_server::RedisServer;

const TTL: Duration = Duration::from_millis(600);

fn manager(server: &RedisServer, owner: &str) -> LeaseManager {
    LeaseManager::builder(server.url(), owner)
        .ttl(TTL)
        .build()
        .expect("lease manager")
}

/// A member that owns each of `streams` it can get, hands over what is over its
/// share (checked every 50 ms), and tries again; until `stop`.
fn run_member(fleet: Fleet, streams: &[String], stop: CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for id in streams {
        let (fleet, id, stop) = (fleet.clone(), id.clone(), stop.clone());
        tasks.spawn(async move {
            loop {
                let (lease, mut slot): (_, FleetSlot) = tokio::select! {
                    got = fleet.acquire(&id) => got,
                    () = stop.cancelled() => return,
                };
                let watch: LeaseWatch = lease.keep_alive();
                loop {
                    tokio::select! {
                        () = stop.cancelled() => {
                            let _ = watch.release().await;
                            return;
                        }
                        () = watch.lost() => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {
                            if slot.hand_over() {
                                let _ = watch.release().await;
                                break;
                            }
                        }
                    }
                }
            }
        });
    }
    tasks
}

/// Who holds each stream's lease now, by owner.
async fn owners(leases: &LeaseManager, streams: &[String]) -> BTreeMap<String, usize> {
    let mut by_owner = BTreeMap::new();
    for id in streams {
        if let Some((owner, _)) = leases.holder(id).await.expect("redis") {
            *by_owner.entry(owner).or_insert(0) += 1;
        }
    }
    by_owner
}

/// Poll until every stream has an owner and the owners are `want` (sorted counts).
async fn settle(
    leases: &LeaseManager,
    streams: &[String],
    want: &[usize],
) -> BTreeMap<String, usize> {
    let mut last = BTreeMap::new();
    for _ in 0..200 {
        last = owners(leases, streams).await;
        let mut counts: Vec<usize> = last.values().copied().collect();
        counts.sort_unstable();
        if counts == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("owners never settled to {want:?}: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_take_their_share_hand_over_to_newcomers_and_take_over_the_dead() {
    let server = RedisServer::start();
    let streams: Vec<String> = (0..12).map(|i| format!("cam{i}")).collect();
    let probe = manager(&server, "probe");

    // Alone, a member takes everything.
    let a = Fleet::join(&manager(&server, "relay-a"), streams.len());
    let stop_a = CancellationToken::new();
    let _a = run_member(a.clone(), &streams, stop_a.clone());
    settle(&probe, &streams, &[12]).await;
    assert_eq!(a.members(), 1);
    assert_eq!(a.owned(), 12);

    // Two more join: the first hands streams over until each owns its share.
    let b = Fleet::join(&manager(&server, "relay-b"), streams.len());
    let c = Fleet::join(&manager(&server, "relay-c"), streams.len());
    let stop_b = CancellationToken::new();
    let stop_c = CancellationToken::new();
    let _b = run_member(b.clone(), &streams, stop_b.clone());
    let mut c_tasks = run_member(c.clone(), &streams, stop_c.clone());
    let settled = settle(&probe, &streams, &[4, 4, 4]).await;
    assert_eq!(settled.len(), 3, "{settled:?}");
    assert_eq!((a.members(), a.share()), (3, 4));

    // c dies without a word (its heartbeat and its renewals stop): a and b take its
    // streams within the lease TTL and share them.
    c_tasks.abort_all();
    drop(c);
    while c_tasks.join_next().await.is_some() {}
    let after = settle(&probe, &streams, &[6, 6]).await;
    assert!(!after.contains_key("relay-c"), "{after:?}");
    assert_eq!((a.members(), a.share()), (2, 6));

    // b leaves cleanly: a takes everything back.
    stop_b.cancel();
    b.leave().await;
    settle(&probe, &streams, &[12]).await;
    stop_a.cancel();
}

#[tokio::test]
async fn a_member_never_takes_more_than_its_share_even_when_streams_try_at_once() {
    let server = RedisServer::start();
    let streams: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    let probe = manager(&server, "probe");
    // Another member is alive (heard from) but holds nothing: the share is 5.
    let other = Fleet::join(&manager(&server, "relay-b"), streams.len());
    while other.members() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a = Fleet::join(&manager(&server, "relay-a"), streams.len());
    let stop = CancellationToken::new();
    let _a = run_member(a.clone(), &streams, stop.clone());
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let owned = owners(&probe, &streams).await;
        assert!(owned.get("relay-a").copied().unwrap_or(0) <= 5, "{owned:?}");
        assert!(a.owned() <= 5);
    }
    assert_eq!(owners(&probe, &streams).await.get("relay-a"), Some(&5));
    assert_eq!(other.members(), 2);
    stop.cancel();
}
