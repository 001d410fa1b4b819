use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;

/// A replica whose pull from `frozen` never ends, as from a stopped peer
/// whose kernel still accepts the connection.
#[derive(Clone, Default)]
struct Fake {
    pulls: Arc<Mutex<Vec<String>>>,
    merges: Arc<Mutex<usize>>,
}

impl Replica for Fake {
    fn digest(&self) -> String {
        "ours".into()
    }

    async fn pull(&self, peer: &Member) -> anyhow::Result<Pulled> {
        self.pulls.lock().unwrap().push(peer.name.clone());
        if peer.name == "frozen" {
            std::future::pending::<()>().await;
        }
        Ok(Pulled::default())
    }

    async fn merge(&self, _peer: &str, _pulled: Pulled) -> anyhow::Result<usize> {
        *self.merges.lock().unwrap() += 1;
        Ok(1)
    }
}

fn member(name: &str, port: u16) -> Member {
    Member {
        name: name.into(),
        generation: 1,
        gossip: ([127, 0, 0, 1], port).into(),
        live: true,
        peer: Some(([127, 0, 0, 1], port).into()),
        ingress: None,
        capacity: 1,
        load: 0,
        state: "theirs".into(),
        ready: String::new(),
        ingress_cert: None,
    }
}

fn view() -> Members {
    let mut all = BTreeMap::new();
    for (name, port) in [("me", 1), ("frozen", 2), ("good", 3)] {
        all.insert(name.to_string(), member(name, port));
    }
    Members {
        me: "me".into(),
        all,
    }
}

#[tokio::test]
async fn a_frozen_peer_holds_one_pull_and_never_the_rounds() {
    let replica = Fake::default();
    let view = view();
    let mut rounds = Rounds::default();
    assert_eq!(round(&replica, &view, &mut rounds), 2);
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), rounds.pulled())
            .await
            .expect("the good peer's pull finishes while the frozen one hangs");
        // The good peer is pulled again (it brought news); the frozen one
        // is not asked twice while its pull is in flight.
        assert_eq!(round(&replica, &view, &mut rounds), 1);
    }
    let pulls = replica.pulls.lock().unwrap().clone();
    assert_eq!(
        pulls.iter().filter(|p| *p == "frozen").count(),
        1,
        "{pulls:?}"
    );
    assert_eq!(*replica.merges.lock().unwrap(), 3);
}

#[tokio::test]
async fn a_peer_that_brought_nothing_new_is_not_asked_again_until_a_digest_changes() {
    let mut rounds = Rounds::default();
    let pair = ("theirs".to_string(), "ours".to_string());
    rounds.pulling.insert("quiet".into());
    rounds.note(Finished {
        peer: "quiet".into(),
        pair: pair.clone(),
        outcome: Outcome::Merged(0),
    });
    assert!(!rounds.may_pull("quiet", &pair));
    assert!(rounds.may_pull("quiet", &("theirs".into(), "new".into())));
    rounds.note(Finished {
        peer: "gone".into(),
        pair: pair.clone(),
        outcome: Outcome::PullFailed(anyhow::anyhow!("timed out")),
    });
    assert!(!rounds.may_pull("gone", &pair), "left alone for a while");
}
