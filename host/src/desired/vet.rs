//! What a record from a peer must be before it is merged: a peer holds the
//! cluster key, but a bug, a newer version or a damaged store on its side
//! must not put a record here that this node could not have accepted from
//! a user, or one that breaks the rule (a version that cannot be followed,
//! a stamp from far in the future).

use super::Record;
use crate::spec::{self, AppSpec};

/// The highest version a record may carry: far past any real count of
/// deploys, and exact in every JSON reader (2^53).
pub(crate) const MAX_VERSION: u64 = 1 << 53;
/// How far ahead of this node's clock a record's time may be. Peer calls
/// already need clocks within two minutes; a record keeps the time of the
/// node that made it, so this allows for that node's clock too.
pub(crate) const MAX_AHEAD_SECS: u64 = 3600;
/// The largest spec accepted, as JSON: what the admin API accepts.
pub(crate) const MAX_SPEC_BYTES: usize = 1 << 20;

/// Why `record` cannot be merged at `now`, if it cannot. The reason names
/// the field, never a value of the spec (env values may be secrets).
pub(crate) fn vet(record: &Record, now: u64) -> Result<(), String> {
    spec::validate_name(&record.name).map_err(|e| e.0)?;
    // Stores made before the mesh have no origin.
    if !record.origin.is_empty() && !valid_node_name(&record.origin) {
        return Err(format!(
            "origin `{}` is not a node name",
            record.origin.escape_debug()
        ));
    }
    if record.version == 0 || record.version > MAX_VERSION {
        return Err(format!(
            "version {} is outside 1 to {MAX_VERSION}",
            record.version
        ));
    }
    if record.at > now + MAX_AHEAD_SECS {
        return Err(format!(
            "it was made {} s ahead of this node's clock; keep members' clocks in sync (NTP)",
            record.at - now
        ));
    }
    match &record.spec {
        None => Ok(()),
        Some(spec) => vet_spec(&record.name, spec),
    }
}

fn vet_spec(name: &str, spec: &AppSpec) -> Result<(), String> {
    if spec.name != name {
        return Err("its spec names another app".into());
    }
    // Memory is checked against this host's cap when the app is installed
    // here, not now: members may allow different sizes.
    spec.validate(u64::MAX).map_err(|e| e.0)?;
    let size = serde_json::to_vec(spec).map_or(usize::MAX, |json| json.len());
    if size > MAX_SPEC_BYTES {
        return Err(format!(
            "its spec is {size} bytes (at most {MAX_SPEC_BYTES})"
        ));
    }
    Ok(())
}

/// A node name: 1 to 63 letters, digits, `-`, `.` or `_`.
pub(crate) fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec;

    fn record(name: &str) -> Record {
        Record {
            name: name.into(),
            version: 1,
            origin: "node-a".into(),
            at: 1_000,
            spec: Some(spec(name)),
        }
    }

    #[test]
    fn good_records_pass_and_each_broken_field_is_named() {
        assert_eq!(vet(&record("app"), 1_000), Ok(()));
        let tombstone = Record {
            spec: None,
            origin: String::new(),
            ..record("app")
        };
        assert_eq!(vet(&tombstone, 1_000), Ok(()));

        type Spoil = fn(&mut Record);
        let cases: [(Spoil, &str); 8] = [
            (|r| r.name = "../etc".into(), "invalid app name"),
            (|r| r.origin = "a b".into(), "origin"),
            (|r| r.version = 0, "version 0"),
            (|r| r.version = u64::MAX, "version"),
            (|r| r.at = 1_000 + 2 * 3600, "ahead"),
            (
                |r| r.spec.as_mut().unwrap().name = "other".into(),
                "another app",
            ),
            (
                |r| r.spec.as_mut().unwrap().component = "../../x".into(),
                "`component`",
            ),
            (
                |r| {
                    let env = &mut r.spec.as_mut().unwrap().env;
                    env.insert("BIG".into(), "x".repeat(MAX_SPEC_BYTES));
                },
                "bytes",
            ),
        ];
        for (spoil, why) in cases {
            let mut bad = record("app");
            spoil(&mut bad);
            let error = vet(&bad, 1_000).unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
            assert!(!error.contains("xxxx"), "{error}");
        }
    }

    #[test]
    fn node_names() {
        assert!(valid_node_name("node-a.example_1"));
        for bad in ["", "a b", "a/b", &"a".repeat(64)] {
            assert!(!valid_node_name(bad), "{bad}");
        }
    }
}
