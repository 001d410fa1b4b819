//! The chaos suite's hosts: real `shoal host` processes, each in its own
//! namespace (or, without namespaces, on loopback ports of its own), on
//! ports that stay the same across restarts. Admin calls run on a thread
//! that has entered the node's namespace, with the node's token and
//! self-signed certificate.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_test_support::{READY_TIMEOUT, Shoal, run_to_exit};

use crate::net::{self, Net};

/// One node's fixed identity: where it lives and listens.
#[derive(Clone)]
pub struct Place {
    pub name: String,
    /// Its namespace (`None` on loopback).
    pub ns: Option<String>,
    /// Its ingress as this process reaches it (from inside `ns`).
    pub ingress: String,
    admin: String,
    gossip: String,
    data: PathBuf,
    cache: PathBuf,
}

/// A process's id and incarnation, for the resource sampler.
pub type Pids = Arc<Mutex<Vec<Option<(u32, u16)>>>>;

/// The hosts of one run.
pub struct Cluster {
    bin: String,
    pub places: Vec<Place>,
    procs: Vec<Option<Shoal>>,
    incarnations: Vec<u16>,
    pub pids: Pids,
    key: PathBuf,
    /// Dropped after the processes: deleting a namespace kills what is left.
    pub net: Option<Net>,
    _root: tempfile::TempDir,
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Places for `n` nodes (in `net`'s namespaces if given); nothing runs yet.
    pub fn new(bin: &str, n: usize, net: Option<Net>) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let key = root.path().join("cluster.key");
        let (status, _, stderr) = run_to_exit(
            bin,
            &["keygen", key.to_str().unwrap()],
            Duration::from_secs(10),
        );
        assert!(status.success(), "{stderr}");
        let places = (0..n)
            .map(|k| {
                let (ns, ingress, admin, gossip) = match &net {
                    Some(net) => (
                        Some(net.ns(k)),
                        "127.0.0.1:8080".to_string(),
                        "0.0.0.0:7070".to_string(),
                        format!("{}:7946", Net::addr(k)),
                    ),
                    None => (
                        None,
                        format!("127.0.0.1:{}", free_tcp()),
                        format!("127.0.0.1:{}", free_tcp()),
                        format!("127.0.0.1:{}", free_udp()),
                    ),
                };
                Place {
                    name: format!("n{k}"),
                    ns,
                    ingress,
                    admin,
                    gossip,
                    data: root.path().join(format!("data-{k}")),
                    cache: root.path().join(format!("cache-{k}")),
                }
            })
            .collect();
        Cluster {
            bin: bin.to_string(),
            places,
            procs: (0..n).map(|_| None).collect(),
            incarnations: vec![0; n],
            pids: Arc::new(Mutex::new(vec![None; n])),
            key,
            net,
            _root: root,
        }
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Starts node `k` (joining every other node) and waits until it serves.
    pub fn start(&mut self, k: usize) {
        let place = &self.places[k];
        let mut command = match &place.ns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns, &self.bin]);
                command
            }
            None => Command::new(&self.bin),
        };
        command.arg("host").arg("--data-dir").arg(&place.data);
        command.args(["--name", &place.name, "--cluster-key-file"]);
        command.arg(&self.key);
        let listen = match place.ns {
            Some(_) => "0.0.0.0:8080",
            None => &place.ingress,
        };
        command.args(["--listen", listen, "--admin", &place.admin]);
        command.args(["--gossip", &place.gossip]);
        if place.ns.is_some() {
            command.arg("--tls-self-signed");
        }
        for (j, other) in self.places.iter().enumerate() {
            if j != k {
                command.args(["--join", &other.gossip]);
            }
        }
        command
            .env("SHOAL_CACHE_DIR", &place.cache)
            .env("SHOAL_LOG", "warn")
            .env("NO_COLOR", "1");
        let shoal = Shoal::spawn(command);
        shoal
            .wait_for_log("admin API on http", READY_TIMEOUT)
            .unwrap_or_else(|| panic!("the admin API of {} did not come up", place.name));
        self.incarnations[k] += 1;
        self.pids.lock().unwrap()[k] = Some((shoal.pid(), self.incarnations[k]));
        self.procs[k] = Some(shoal);
    }

    /// kill -9, and waits for the process to be gone.
    pub fn kill(&mut self, k: usize) {
        self.pids.lock().unwrap()[k] = None;
        if let Some(mut shoal) = self.procs[k].take() {
            shoal.signal("KILL");
            shoal.wait_exit(Duration::from_secs(10));
        }
    }

    /// Deletes node `k`'s data dir and compile cache (it must be down).
    pub fn wipe(&mut self, k: usize) {
        assert!(self.procs[k].is_none(), "wiping a running node");
        for dir in [&self.places[k].data, &self.places[k].cache] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).unwrap();
            }
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `k`.
    pub fn signal(&self, k: usize, signal: &str) {
        self.procs[k].as_ref().expect("node is down").signal(signal);
    }

    /// Node `k`'s admin API, from a thread inside its namespace: the status
    /// and body, or why the exchange failed (down, frozen, cut off).
    pub fn admin(&self, k: usize, call: &Call) -> Result<(u16, String), String> {
        let place = &self.places[k];
        let base = match &place.ns {
            Some(_) => "https://127.0.0.1:7070".to_string(),
            None => format!("http://{}", place.admin),
        };
        let data = place.data.clone();
        let ns = place.ns.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    if let Some(ns) = &ns {
                        net::enter(ns);
                    }
                    exchange(&base, &data, call)
                })
                .join()
                .unwrap()
        })
    }

    /// Node `k`'s live member count (0 if it does not answer).
    pub fn members(&self, k: usize) -> usize {
        let call = Call::get("/v1/health", Duration::from_secs(3));
        self.admin(k, &call)
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["members"].as_u64())
            .unwrap_or(0) as usize
    }

    /// Whether node `k` runs.
    pub fn is_up(&self, k: usize) -> bool {
        self.procs[k].is_some()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Processes first (their Drop kills and reaps), then the namespaces.
        for shoal in &mut self.procs {
            drop(shoal.take());
        }
        drop(self.net.take());
    }
}

/// One admin request.
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

impl Call {
    pub fn get(path: &str, timeout: Duration) -> Call {
        Call {
            method: "GET",
            path: path.to_string(),
            content_type: "application/json",
            body: Vec::new(),
            timeout,
        }
    }
}

fn agent(data: &Path, https: bool, timeout: Duration) -> Result<ureq::Agent, String> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout));
    if https {
        let pem = std::fs::read(data.join("tls-cert.pem"))
            .map_err(|e| format!("no certificate in {}: {e}", data.display()))?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
            .build();
        config = config.tls_config(tls);
    }
    Ok(config.build().into())
}

fn exchange(base: &str, data: &Path, call: &Call) -> Result<(u16, String), String> {
    let agent = agent(data, base.starts_with("https"), call.timeout)?;
    let token = std::fs::read_to_string(data.join("token")).map_err(|e| e.to_string())?;
    let request = ureq::http::Request::builder()
        .method(call.method)
        .uri(format!("{base}{}", call.path))
        .header("authorization", format!("Bearer {}", token.trim()))
        .header("content-type", call.content_type)
        .body(call.body.clone())
        .unwrap();
    let mut response = agent.run(request).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}
