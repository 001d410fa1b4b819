//! The chaos suite's network: one namespace per node, each joined by a
//! veth pair to a bridge in a namespace of its own, on a subnet that
//! exists only inside those namespaces. Every fault is a change in the
//! bridge namespace: a partition moves the minority's links to a second
//! bridge (packets vanish silently, carriers stay up), an isolation takes
//! one link down. Dropping a [`Net`] kills what runs in its namespaces and
//! deletes them (which deletes their links); [`sweep`] removes what a dead
//! run left behind.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

/// The test subnet's first three octets; node `k` is `.(10 + k)`.
const SUBNET: &str = "10.77.0";
/// Every namespace this suite makes starts with it, then the pid.
const PREFIX: &str = "shc-";

/// Runs `ip ARGS`; its stderr on failure.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Kills every process in namespace `ns`, then deletes it.
fn remove(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    if let Err(error) = ip(&["netns", "del", ns]) {
        eprintln!("chaos: {error}");
    }
}

/// Deletes the namespaces of runs whose test process is gone.
pub fn sweep() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = ns
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with("chaos") {
            eprintln!("chaos: removing {ns}, left by a dead run");
            remove(ns);
        }
    }
}

/// Whether namespaces can be made here; why not, if not.
pub fn probe() -> Result<(), String> {
    sweep();
    let name = format!("{PREFIX}{}-probe", std::process::id());
    ip(&["netns", "add", &name])?;
    ip(&["netns", "del", &name]).map(drop)
}

/// Moves the calling thread into namespace `ns` (sockets it opens later
/// live there).
pub fn enter(ns: &str) {
    let file = File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("cannot open namespace {ns}: {e}"));
    // SAFETY: setns only reads the descriptor, which `file` keeps open for
    // the call, and changes the namespace of this thread alone.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns into {ns}: {}",
        std::io::Error::last_os_error()
    );
}

/// The namespaces of one run.
pub struct Net {
    prefix: String,
    made: Vec<String>,
    nodes: usize,
}

impl Net {
    /// A bridge namespace and `nodes` node namespaces, linked and up.
    pub fn create(nodes: usize) -> Result<Net, String> {
        let mut net = Net {
            prefix: format!("{PREFIX}{}", std::process::id()),
            made: Vec::new(),
            nodes,
        };
        let br = net.bridge();
        ip(&["netns", "add", &br])?;
        net.made.push(br.clone());
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        for bridge in ["br0", "br1"] {
            ip(&["-n", &br, "link", "add", bridge, "type", "bridge"])?;
            ip(&["-n", &br, "link", "set", bridge, "up"])?;
        }
        for k in 0..nodes {
            let ns = net.ns(k);
            ip(&["netns", "add", &ns])?;
            net.made.push(ns.clone());
            let link = format!("n{k}");
            ip(&[
                "-n", &br, "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &link, "master", "br0", "up"])?;
            let addr = format!("{}/24", Net::addr(k));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Node `k`'s namespace.
    pub fn ns(&self, k: usize) -> String {
        format!("{}-n{k}", self.prefix)
    }

    /// Node `k`'s address on the test subnet.
    pub fn addr(k: usize) -> String {
        format!("{SUBNET}.{}", 10 + k)
    }

    /// Cuts `minority` off the others: their links move to the second
    /// bridge, where they still reach each other.
    pub fn partition(&self, minority: &[usize]) {
        for &k in minority {
            self.link(k, &["master", "br1"]);
        }
    }

    /// Takes node `k`'s link down.
    pub fn isolate(&self, k: usize) {
        self.link(k, &["down"]);
    }

    /// Every link up on the first bridge again.
    pub fn heal(&self) {
        for k in 0..self.nodes {
            self.link(k, &["master", "br0", "up"]);
        }
    }

    fn link(&self, k: usize, how: &[&str]) {
        let br = self.bridge();
        let link = format!("n{k}");
        let mut args = vec!["-n", &br, "link", "set", &link];
        args.extend(how);
        ip(&args).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            remove(ns);
        }
    }
}
