//! A mesh of real hosts on loopback sharing one cluster key, each on a
//! data dir that outlives its process (so a host can be killed, stopped
//! and started again on its state).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Shoal, run_to_exit, wait_until};

/// How long a mesh may take to form.
const FORM: Duration = Duration::from_secs(30);

pub struct Mesh {
    bin: String,
    hosts: Vec<Option<Shoal>>,
    dirs: Vec<PathBuf>,
    key: PathBuf,
    args: Vec<String>,
    _root: tempfile::TempDir,
}

impl Mesh {
    /// Starts `n` hosts of `bin`, named `node-a`, `node-b`…, each with
    /// `args`; every one after the first joins the first. Returns once
    /// every host counts `n` live members.
    pub fn start(bin: &str, n: usize, args: &[&str]) -> Mesh {
        let root = tempfile::tempdir().unwrap();
        let key = root.path().join("cluster.key");
        let (status, _, stderr) = run_to_exit(
            bin,
            &["keygen", key.to_str().unwrap()],
            Duration::from_secs(10),
        );
        assert!(status.success(), "{stderr}");
        let mut mesh = Mesh {
            bin: bin.to_string(),
            hosts: Vec::new(),
            dirs: (0..n).map(|i| root.path().join(format!("{i}"))).collect(),
            key,
            args: args.iter().map(|a| a.to_string()).collect(),
            _root: root,
        };
        for i in 0..n {
            let host = mesh.spawn(i);
            mesh.hosts.push(Some(host));
        }
        mesh.wait_members(n);
        mesh
    }

    fn spawn(&self, i: usize) -> Shoal {
        let name = format!("node-{}", (b'a' + i as u8) as char);
        let mut args = vec![
            "--name".to_string(),
            name,
            "--cluster-key-file".into(),
            self.key.to_str().unwrap().into(),
        ];
        if let Some(seed) = self.live().next() {
            args.extend(["--join".into(), seed.gossip_addr()]);
        }
        args.extend(self.args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Shoal::host(&self.bin, &self.dirs[i], &args)
    }

    /// Host `i`; panics if it is down.
    pub fn host(&self, i: usize) -> &Shoal {
        self.hosts[i].as_ref().expect("host is down")
    }

    /// How many hosts the mesh was started with, up or down.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the mesh has no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The index of the host named `name`, if it is up.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.hosts.len()).find(|&i| self.hosts[i].as_ref().is_some_and(|h| h.name() == name))
    }

    /// Host `i`'s data dir.
    pub fn data(&self, i: usize) -> &Path {
        &self.dirs[i]
    }

    /// The hosts that are up.
    pub fn live(&self) -> impl Iterator<Item = &Shoal> {
        self.hosts.iter().flatten()
    }

    /// Kills host `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        let host = self.hosts[i].take().expect("already down");
        host.signal("KILL");
    }

    /// Takes host `i` out of the mesh, to stop it as the test needs.
    pub fn take(&mut self, i: usize) -> Shoal {
        self.hosts[i].take().expect("already down")
    }

    /// Starts host `i` again on its data dir, joining a live one.
    pub fn restart(&mut self, i: usize) {
        let host = self.spawn(i);
        self.hosts[i] = Some(host);
    }

    /// Waits until every live host counts `n` live members.
    pub fn wait_members(&self, n: usize) {
        for host in self.live() {
            wait_until(
                FORM,
                &format!("{} to see {n} live members", host.name()),
                || members(host) == n,
            );
        }
    }
}

/// The live members `host` counts (0 if it does not answer).
fn members(host: &Shoal) -> usize {
    let health = host.admin_get("/v1/health");
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap_or_default();
    health["members"].as_u64().unwrap_or(0) as usize
}
