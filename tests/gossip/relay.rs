//! A UDP relay the attacker controls: the network between two nodes.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Datagrams a relay received, with when.
type Recording = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// A UDP relay standing for the network between two nodes: what arrives
/// at `listen` goes on to `target` from one upstream socket per client,
/// and the target's answers come back through `listen`. Datagrams from
/// clients are recorded; `cut` drops everything, both ways.
pub struct Relay {
    pub addr: SocketAddr,
    pub cut: Arc<AtomicBool>,
    recorded: Recording,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listen = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        listen
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let relay = Relay {
            addr: listen.local_addr().unwrap(),
            cut: Arc::default(),
            recorded: Arc::default(),
            stop: Arc::default(),
        };
        let (cut, recorded, stop) = (
            relay.cut.clone(),
            relay.recorded.clone(),
            relay.stop.clone(),
        );
        std::thread::spawn(move || {
            let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0; 1 << 16];
            while !stop.load(Ordering::Relaxed) {
                let Ok((len, client)) = listen.recv_from(&mut buf) else {
                    continue;
                };
                recorded
                    .lock()
                    .unwrap()
                    .push((Instant::now(), buf[..len].to_vec()));
                if cut.load(Ordering::Relaxed) {
                    continue;
                }
                let upstream = upstreams.entry(client).or_insert_with(|| {
                    let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
                    upstream
                        .set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    let (back, listen, cut, stop) =
                        (upstream.clone(), listen.clone(), cut.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0; 1 << 16];
                        while !stop.load(Ordering::Relaxed) {
                            if let Ok(len) = back.recv(&mut buf)
                                && !cut.load(Ordering::Relaxed)
                            {
                                let _ = listen.send_to(&buf[..len], client);
                            }
                        }
                    });
                    upstream
                });
                let _ = upstream.send_to(&buf[..len], target);
            }
        });
        relay
    }

    /// Datagrams recorded since `since`.
    pub fn recorded_since(&self, since: Instant) -> Vec<Vec<u8>> {
        let recorded = self.recorded.lock().unwrap();
        recorded
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, datagram)| datagram.clone())
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
