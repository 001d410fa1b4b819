use super::*;

fn snapshot(apps: usize) -> Snapshot {
    Snapshot {
        digest: "d1".into(),
        apps: (0..apps).map(|i| (format!("app-{i:04}"), 1)).collect(),
    }
}

#[test]
fn round_trips_sparse_and_dense_sets() {
    let s = snapshot(1000);
    for ready in [
        BTreeSet::new(),
        BTreeSet::from([0]),
        BTreeSet::from([3, 200, 999]),
        (0..1000).step_by(100).collect(),
        (0..1000).collect(),
        (0..1000).filter(|i| i % 3 != 0).collect(),
    ] {
        let text = encode(&s, &ready);
        assert_eq!(decode(&s, &text), Some(ready.clone()), "{text}");
        assert_eq!(digest_of(&text), Some("d1"));
    }
}

#[test]
fn stays_small() {
    let s = snapshot(1000);
    let ten: BTreeSet<usize> = (0..1000).step_by(100).collect();
    assert!(encode(&s, &ten).len() < 40, "{}", encode(&s, &ten));
    let all: BTreeSet<usize> = (0..1000).collect();
    assert!(encode(&s, &all).len() < 260);
}

#[test]
fn other_snapshots_and_garbage_decode_to_nothing() {
    let s = snapshot(10);
    let text = encode(&s, &BTreeSet::from([1]));
    let other = Snapshot {
        digest: "d2".into(),
        apps: s.apps.clone(),
    };
    assert_eq!(decode(&other, &text), None);
    for junk in ["", "d1", "d1:", "d1:x00", "d1:gzz", "d1:g7f", "d1:gff"] {
        assert_eq!(decode(&s, junk), None, "{junk}");
    }
}

#[test]
fn an_app_being_upgraded_here_is_advertised_at_its_old_version() {
    let snap = |digest: &str, hello: u64| {
        Arc::new(Snapshot {
            digest: digest.into(),
            apps: vec![("a".into(), 1), ("hello".into(), hello)],
        })
    };
    let (d1, d2, d3) = (snap("d1", 1), snap("d2", 2), snap("d3", 3));
    let older = [d3.clone(), d2.clone(), d1.clone()];
    let serving = |hello: u64| {
        move |name: &str| match name {
            "a" => Some((1, 2)),
            "hello" => Some((hello, 1)),
            _ => None,
        }
    };
    // Installing hello@3 while it serves hello@1: d1 says so.
    let (against, ready, load) = to_advertise(&d3, &older, serving(1));
    assert_eq!(
        (against.digest.as_str(), ready, load),
        ("d1", BTreeSet::from([0, 1]), 3)
    );
    // Served at the current version: the current snapshot.
    let (against, ready, _) = to_advertise(&d3, &older, serving(3));
    assert_eq!(
        (against.digest.as_str(), ready),
        ("d3", BTreeSet::from([0, 1]))
    );
    // Too far back for readers to be sure to hold it: the current one.
    let far: Vec<_> = (0..ADVERTISE_BACK)
        .map(|_| d3.clone())
        .chain([d1])
        .collect();
    let (against, _, _) = to_advertise(&d3, &far, serving(1));
    assert_eq!(against.digest, "d3");
    // No remembered state says more: the current one.
    let (against, ready, _) = to_advertise(&d3, std::slice::from_ref(&d3), serving(1));
    assert_eq!(
        (against.digest.as_str(), ready),
        ("d3", BTreeSet::from([0]))
    );
}

/// A reader that holds `hello@1` and an advertiser `h` ready for it.
mod ahead {
    use super::*;
    use crate::desired::Record;
    use crate::mesh::membership::Member;

    fn record(name: &str) -> Record {
        Record {
            name: name.into(),
            version: 1,
            origin: "h".into(),
            at: 10,
            spec: Some(crate::spec::tests::spec(name)),
        }
    }

    fn members(ready: String, live: bool, generation: u64) -> Members {
        let h = Member {
            name: "h".into(),
            generation,
            gossip: ([127, 0, 0, 1], 1).into(),
            live,
            peer: Some(([127, 0, 0, 1], 2).into()),
            ingress: Some(([127, 0, 0, 1], 3).into()),
            ingress_cert: None,
            capacity: 1,
            load: 0,
            state: digest_of(&ready).unwrap_or_default().into(),
            ready,
        };
        Members {
            me: "f".into(),
            all: [("h".to_string(), h)].into(),
        }
    }

    /// The reader's state and snapshot, and `h`'s advertisement
    /// against a state one deploy ahead (`midway`), which the reader
    /// does not hold.
    fn setup() -> (Desired, Arc<Snapshot>, String) {
        let desired = Desired::new([record("hello")], 0);
        let ahead = Desired::new([record("hello"), record("midway")], 0).snapshot();
        assert_eq!(ahead.apps[0].0, "hello");
        let s1 = desired.snapshot();
        (desired, s1, encode(&ahead, &BTreeSet::from([0, 1])))
    }

    #[test]
    fn a_holder_ahead_of_the_reader_stays_ready_for_what_it_served() {
        let (desired, s1, ahead) = setup();
        let mut seen = Seen::default();
        let now = Instant::now();
        let before = members(encode(&s1, &BTreeSet::from([0])), true, 1);
        let table = ReadyTable::build(&before, std::slice::from_ref(&s1), &desired, &mut seen, now);
        assert_eq!(table.ready_nodes("hello"), ["h"]);
        assert!(table.is_live("h") && !table.is_live("f"));
        assert!(!table.catching_up());
        // `h` took a deploy the reader has not pulled yet.
        let after = members(ahead.clone(), true, 1);
        let later = now + Duration::from_secs(1);
        let table = ReadyTable::build(
            &after,
            std::slice::from_ref(&s1),
            &desired,
            &mut seen,
            later,
        );
        assert_eq!(table.ready_nodes("hello"), ["h"]);
        assert!(table.ready_nodes("midway").is_empty());
        assert!(table.catching_up(), "h holds a state the reader does not");
        // Once the reader holds the new state, it decodes it as is.
        let caught_up = Desired::new([record("hello"), record("midway")], 0);
        let s2 = caught_up.snapshot();
        let table = ReadyTable::build(&after, &[s2, s1], &caught_up, &mut seen, later);
        assert_eq!(table.ready_nodes("midway"), ["h"]);
        assert!(!table.catching_up());
    }

    #[test]
    fn what_was_seen_is_forgotten_past_its_time_on_death_restart_or_garbage() {
        let (desired, s1, ahead) = setup();
        let before = members(encode(&s1, &BTreeSet::from([0])), true, 1);
        let now = Instant::now();
        let cases = [
            ("too old", members(ahead.clone(), true, 1), REMEMBER_FOR, 1),
            ("dead", members(ahead.clone(), false, 1), Duration::ZERO, 1),
            (
                "restarted",
                members(ahead.clone(), true, 2),
                Duration::ZERO,
                2,
            ),
            (
                "garbage",
                members("junk".into(), true, 1),
                Duration::ZERO,
                1,
            ),
        ];
        for (case, after, age, generation) in cases {
            let mut seen = Seen::default();
            let snapshots = [s1.clone()];
            ReadyTable::build(&before, &snapshots, &desired, &mut seen, now);
            let table = ReadyTable::build(&after, &snapshots, &desired, &mut seen, now + age);
            assert!(table.ready_nodes("hello").is_empty(), "{case}");
            assert_eq!(table.is_live("h"), case != "dead", "{case}");
            // Still forgotten once it is back, ahead: never reinvented.
            let back = members(ahead.clone(), true, generation);
            let table = ReadyTable::build(&back, &snapshots, &desired, &mut seen, now + age);
            assert!(table.ready_nodes("hello").is_empty(), "{case}");
        }
    }
}
