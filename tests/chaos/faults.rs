//! What goes wrong, and when: the fault kinds, a seeded RNG (splitmix64,
//! so a seed replays the same schedule everywhere) and the two schedules,
//! the short run's one-of-each and the soak's random mix.

/// A fault the suite injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// kill -9, down a while, started again on its data dir.
    Kill9,
    /// SIGSTOP for longer than the failure detector, then SIGCONT.
    Freeze,
    /// Two nodes cut off the other three, then healed.
    Partition,
    /// One node's link down, then up.
    Isolate,
    /// kill -9, data dir and cache deleted, started again: a node replaced.
    Wipe,
    /// A partition with one name deployed on each side, then healed.
    SplitBrain,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Kill9,
        Kind::Freeze,
        Kind::Partition,
        Kind::Isolate,
        Kind::Wipe,
        Kind::SplitBrain,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Kill9 => "kill-9",
            Kind::Freeze => "freeze",
            Kind::Partition => "partition-3v2",
            Kind::Isolate => "isolate",
            Kind::Wipe => "wiped-restart",
            Kind::SplitBrain => "split-brain-deploy",
        }
    }

    /// Whether the fault cuts links (needs namespaces).
    pub fn needs_netns(self) -> bool {
        matches!(self, Kind::Partition | Kind::Isolate | Kind::SplitBrain)
    }
}

/// One injected fault, as it happened (times in ms of the run).
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// The nodes it hit (killed, frozen, cut off).
    pub nodes: Vec<usize>,
    pub start: u32,
    /// When it was over: restarted and serving, resumed, healed.
    pub heal: u32,
}

/// One planned fault, with the quiet time before it.
#[derive(Debug, Clone)]
pub struct Step {
    pub quiet_ms: u32,
    pub kind: Kind,
    pub nodes: Vec<usize>,
    /// How long it lasts before it is healed.
    pub hold_ms: u32,
}

/// splitmix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }

    /// `k` distinct nodes of `n`.
    pub fn nodes(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        let mut picked = all[..k].to_vec();
        picked.sort();
        picked
    }
}

fn step(rng: &mut Rng, kind: Kind, n: usize, soak: bool) -> Step {
    let (count, hold_ms) = match kind {
        Kind::Kill9 => (
            1,
            if soak {
                rng.between(1_000, 5_000)
            } else {
                2_000
            },
        ),
        Kind::Freeze => (
            1,
            if soak {
                rng.between(4_000, 8_000)
            } else {
                5_000
            },
        ),
        Kind::Partition => (2, 20_000),
        Kind::Isolate => (
            1,
            if soak {
                rng.between(5_000, 15_000)
            } else {
                8_000
            },
        ),
        Kind::Wipe => (1, 1_000),
        Kind::SplitBrain => (2, 6_000),
    };
    Step {
        quiet_ms: rng.between(2_000, 6_000),
        kind,
        nodes: rng.nodes(n, count),
        hold_ms,
    }
}

/// The short run: one fault of each kind, in a fixed order, on nodes the
/// seed picks (the link faults left out without namespaces).
pub fn short(seed: u64, n: usize, netns: bool) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    Kind::ALL
        .iter()
        .filter(|k| netns || !k.needs_netns())
        .map(|&kind| step(&mut rng, kind, n, false))
        .collect()
}

/// A soak: random faults until about `minutes` of schedule are planned.
pub fn soak(seed: u64, minutes: u32, n: usize, netns: bool) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| netns || !k.needs_netns())
        .collect();
    let budget = u64::from(minutes) * 60_000;
    let mut planned = 0u64;
    let mut steps = Vec::new();
    while planned < budget {
        let kind = kinds[rng.below(kinds.len())];
        let step = step(&mut rng, kind, n, true);
        // Quiet, hold, and about 3 s of restart and recovery.
        planned += u64::from(step.quiet_ms + step.hold_ms + 3_000);
        steps.push(step);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_schedule() {
        let a = soak(7, 5, 5, true);
        let b = soak(7, 5, 5, true);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(format!("{a:?}"), format!("{:?}", soak(8, 5, 5, true)));
        assert!(a.iter().all(|s| s.nodes.iter().all(|&k| k < 5)));
    }

    #[test]
    fn the_short_run_has_one_fault_of_each_kind() {
        let kinds: Vec<Kind> = short(1, 5, true).iter().map(|s| s.kind).collect();
        assert_eq!(kinds, Kind::ALL);
        let loopback: Vec<Kind> = short(1, 5, false).iter().map(|s| s.kind).collect();
        assert_eq!(loopback, [Kind::Kill9, Kind::Freeze, Kind::Wipe]);
    }
}
