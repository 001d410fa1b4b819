//! The checker on hand-made histories: it is the thing that must not be wrong.

use super::*;

fn ok(node: u8, app: u8, start: u32) -> Event {
    Event {
        node,
        app,
        start,
        end: start + 5,
        status: 200,
        class: Class::Ok,
        retry_after: false,
    }
}

fn failed(node: u8, app: u8, start: u32, class: Class) -> Event {
    let status = match class {
        Class::NoHolder | Class::Moved => 503,
        Class::Hung | Class::Conn => 0,
        _ => 500,
    };
    Event {
        status,
        class,
        retry_after: status == 503,
        end: start + 5,
        ..ok(node, app, start)
    }
}

fn op(node: usize, kind: OpKind, name: &str, at: u32, stamp: Option<(u64, &str)>) -> Op {
    Op {
        start: at,
        end: at + 10,
        node,
        kind,
        name: name.into(),
        outcome: match stamp {
            Some((v, o)) => Outcome::Acked(Some((v, o.into()))),
            None => Outcome::Indeterminate,
        },
    }
}

/// One node, every app served every 100 ms from 0 to `end`, but for `gaps`.
fn history(end: u32, gaps: &[Event]) -> History {
    let mut events = Vec::new();
    for app in 0..APPS.len() as u8 {
        for start in (0..end).step_by(100) {
            match gaps.iter().find(|g| g.app == app && g.start == start) {
                Some(gap) => events.push(*gap),
                None => events.push(ok(0, app, start)),
            }
        }
    }
    History {
        nodes: 1,
        events,
        faults: Vec::new(),
        ops: vec![op(0, OpKind::Deploy, "r1", 0, Some((1, "n0")))],
        samples: Vec::new(),
        finals: vec![vec![("r1".into(), 1, "n0".into())]],
        end,
        forwarded: 0,
    }
}

#[test]
fn a_quiet_run_breaks_nothing() {
    let figures = check(&history(5_000, &[]));
    assert!(figures.violations.is_empty(), "{:?}", figures.violations);
    assert_eq!((figures.acked, figures.lost), (1, 0));
}

#[test]
fn an_error_outside_a_fault_window_is_a_violation() {
    let figures = check(&history(20_000, &[failed(0, 1, 9_000, Class::BadGateway)]));
    assert_eq!(figures.outside, 1);
    assert_eq!(figures.violations.len(), 1, "{:?}", figures.violations);
}

#[test]
fn errors_inside_a_window_count_for_their_kind_and_recovery_is_measured() {
    let gaps: Vec<Event> = (10..16)
        .map(|i| failed(0, 0, i * 100, Class::Conn))
        .collect();
    let mut h = history(5_000, &gaps);
    h.faults.push(Fault {
        kind: Kind::Kill9,
        nodes: vec![0],
        start: 1_000,
        heal: 1_300,
    });
    let figures = check(&h);
    assert!(figures.violations.is_empty(), "{:?}", figures.violations);
    let share = &figures.shares[&Kind::Kill9];
    assert_eq!(share.failed, 6);
    // Failing until 1,500, served again by the request of 1,600 (ends 1,605).
    assert!(figures.recovery[&Kind::Kill9].contains(&305));
}

#[test]
fn a_503_right_after_a_deploy_is_a_deploy_spread_503() {
    let mut h = history(20_000, &[failed(0, 2, 9_000, Class::NoHolder)]);
    h.ops
        .push(op(0, OpKind::Deploy, "c0", 8_500, Some((1, "n0"))));
    h.finals[0].push(("c0".into(), 1, "n0".into()));
    let figures = check(&h);
    assert_eq!((figures.spread_503, figures.outside), (1, 0));
    assert_eq!(figures.violations.len(), 1, "{:?}", figures.violations);
}

#[test]
fn a_hang_is_a_violation_unless_the_node_was_frozen() {
    let mut hung = failed(0, 0, 2_000, Class::Hung);
    hung.end = 11_000;
    let mut h = history(30_000, &[hung]);
    h.faults.push(Fault {
        kind: Kind::Freeze,
        nodes: vec![0],
        start: 1_900,
        heal: 8_000,
    });
    assert_eq!(check(&h).hung, 0);
    h.faults[0].nodes = vec![1];
    h.nodes = 1;
    let figures = check(&h);
    assert_eq!(figures.hung, 1);
    assert!(figures.violations.iter().any(|v| v.contains("hung")));
}

#[test]
fn a_503_without_retry_after_is_a_violation() {
    let mut bare = failed(0, 0, 2_000, Class::NoHolder);
    bare.retry_after = false;
    let mut h = history(10_000, &[bare]);
    h.faults.push(Fault {
        kind: Kind::Isolate,
        nodes: vec![0],
        start: 1_500,
        heal: 2_500,
    });
    let figures = check(&h);
    assert!(
        figures.violations.iter().any(|v| v.contains("Retry-After")),
        "{:?}",
        figures.violations
    );
}

#[test]
fn a_lost_acknowledged_deploy_is_found() {
    let mut h = history(5_000, &[]);
    h.ops
        .push(op(0, OpKind::Redeploy, "r1", 100, Some((2, "n0"))));
    let figures = check(&h);
    assert_eq!(figures.lost, 1);
    assert!(figures.violations.iter().any(|v| v.contains("rule picks")));
}

#[test]
fn a_lost_removal_is_found_and_a_kept_one_is_not() {
    let mut h = history(5_000, &[]);
    h.ops
        .push(op(0, OpKind::Remove, "r1", 100, Some((2, "n0"))));
    assert_eq!(check(&h).lost, 1);
    h.finals[0].clear();
    let figures = check(&h);
    assert_eq!((figures.lost, figures.superseded), (0, 1));
    assert!(figures.violations.is_empty(), "{:?}", figures.violations);
}

#[test]
fn a_split_brain_ack_with_the_lower_origin_is_superseded_not_lost() {
    let mut h = history(5_000, &[]);
    h.ops
        .push(op(3, OpKind::Deploy, "split", 100, Some((1, "n3"))));
    h.ops
        .push(op(1, OpKind::Deploy, "split", 100, Some((1, "n1"))));
    h.finals[0].push(("split".into(), 1, "n3".into()));
    h.finals[0].sort();
    let figures = check(&h);
    assert!(figures.violations.is_empty(), "{:?}", figures.violations);
    assert_eq!((figures.lost, figures.superseded), (0, 1));
    // The rule compares origins as strings: `n3` beats `n1`, and the
    // version beats both.
    let (a, b, c) = (
        (1, "n1".to_string()),
        (1, "n3".to_string()),
        (2, "n0".to_string()),
    );
    assert_eq!(winner([&a, &b]), Some(&b));
    assert_eq!(winner([&a, &b, &c]), Some(&c));
    // Had the lower origin been kept, the higher one's ack would be lost.
    h.finals[0].retain(|(n, ..)| n != "split");
    h.finals[0].push(("split".into(), 1, "n1".into()));
    assert_eq!(check(&h).lost, 1);
}

#[test]
fn a_record_from_an_unanswered_deploy_may_win() {
    let mut h = history(5_000, &[]);
    h.ops.push(op(2, OpKind::Redeploy, "r1", 100, None));
    h.finals[0] = vec![("r1".into(), 2, "n2".into())];
    let figures = check(&h);
    assert!(figures.violations.is_empty(), "{:?}", figures.violations);
    h.finals[0] = vec![("r1".into(), 2, "n4".into())];
    assert!(!check(&h).violations.is_empty());
}

#[test]
fn growing_memory_is_a_violation() {
    let mut h = history(5_000, &[]);
    h.samples = (0..60)
        .map(|i| Sample {
            node: 0,
            incarnation: 1,
            at: i * 1_000,
            rss_kib: (50 + u64::from(i) * 2) << 10,
            fds: 40,
        })
        .collect();
    let figures = check(&h);
    assert!(
        figures.violations.iter().any(|v| v.contains("RSS grew")),
        "{:?}",
        figures.violations
    );
    for s in &mut h.samples {
        s.rss_kib = 50 << 10;
    }
    assert!(check(&h).violations.is_empty());
}

#[test]
fn more_forwards_than_hops_allow_is_a_loop() {
    let mut h = history(1_000, &[]);
    h.forwarded = 2 * h.events.len() as u64;
    assert!(check(&h).violations.is_empty());
    h.forwarded += 1;
    assert!(check(&h).violations.iter().any(|v| v.contains("a loop")));
}
