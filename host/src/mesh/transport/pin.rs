//! Pins chitchat's codec socket to the tap that feeds it, so that nothing
//! but the sealed transport can ever reach chitchat's decoder.
//!
//! chitchat's `UdpSocket` decodes every datagram it reads before telling
//! anyone where it came from, and decoding inflates a zstd stream: one
//! 64 KB datagram of empty blocks becomes some 250 MB. Its socket listens
//! on 127.0.0.1, where any local process may send to it. A connected UDP
//! socket receives only from its peer (the kernel drops the rest), so the
//! codec socket is connected to the tap. chitchat keeps its socket private;
//! its descriptor is found by the socket's inode, from `/proc`.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{BorrowedFd, RawFd};

use anyhow::Context;

/// Connects the UDP socket this process has bound to `bound` (an IPv4
/// address) to `peer`, and throws away anything it received before.
pub(super) fn pin(bound: SocketAddr, peer: SocketAddr) -> anyhow::Result<()> {
    let fix = "shoal needs /proc (Linux) to guard its gossip codec socket";
    let inode = udp_inode(bound)
        .with_context(|| format!("cannot find the gossip codec socket {bound}; {fix}"))?;
    let fd = fd_of_socket(inode).with_context(|| {
        format!("cannot find the descriptor of the gossip codec socket {bound}; {fix}")
    })?;
    // SAFETY: `fd` is open and stays open while borrowed: /proc says it
    // refers to the socket with `inode`, which the kernel found bound to
    // `bound`; that socket is the caller's (chitchat's codec socket, alive
    // for this call), only one socket can be bound to an address, and no
    // code in this process closes a descriptor it does not own.
    #[allow(unsafe_code)]
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = socket2::SockRef::from(&fd);
    let local = socket.local_addr().ok().and_then(|addr| addr.as_socket());
    anyhow::ensure!(
        local == Some(bound),
        "the descriptor found for the gossip codec socket {bound} is bound to {local:?}"
    );
    socket
        .connect(&peer.into())
        .with_context(|| format!("cannot connect the gossip codec socket to {peer}"))?;
    // Whatever arrived before the connect is dropped unread: the tap has
    // sent nothing yet. The socket is non-blocking (tokio's).
    let mut buf = [MaybeUninit::<u8>::uninit(); 64];
    loop {
        match socket.recv(&mut buf) {
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("cannot empty the gossip codec socket"),
        }
    }
}

/// The inode of the UDP socket bound to `bound`, from `/proc/self/net/udp`.
fn udp_inode(bound: SocketAddr) -> anyhow::Result<u64> {
    let SocketAddr::V4(bound) = bound else {
        anyhow::bail!("the codec socket is not on IPv4");
    };
    let table = std::fs::read_to_string("/proc/self/net/udp")?;
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (ip, port) = fields.get(1)?.split_once(':')?;
            // The address is the raw network-order word, printed as a
            // native-endian number; the port is printed as a number.
            let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            let port = u16::from_str_radix(port, 16).ok()?;
            (ip == *bound.ip() && port == bound.port()).then(|| fields.get(9)?.parse().ok())?
        })
        .context("no such socket in /proc/self/net/udp")
}

/// The descriptor of this process that refers to socket `inode`.
fn fd_of_socket(inode: u64) -> anyhow::Result<RawFd> {
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            // Closed since the directory was read.
            continue;
        };
        if target.as_os_str() == wanted.as_str()
            && let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok())
        {
            return Ok(fd);
        }
    }
    anyhow::bail!("no descriptor of this process refers to {wanted}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_pinned_socket_hears_only_its_peer() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let pinned = std::net::UdpSocket::bind(loopback).unwrap();
        let peer = std::net::UdpSocket::bind(loopback).unwrap();
        let stranger = std::net::UdpSocket::bind(loopback).unwrap();
        let pinned_addr = pinned.local_addr().unwrap();
        stranger.send_to(b"early", pinned_addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        pinned.set_nonblocking(true).unwrap();

        pin(pinned_addr, peer.local_addr().unwrap()).unwrap();
        stranger.send_to(b"stranger", pinned_addr).unwrap();
        peer.send_to(b"peer", pinned_addr).unwrap();
        pinned.set_nonblocking(false).unwrap();
        pinned
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0; 16];
        let (len, from) = pinned.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"peer", "the early datagram was thrown away");
        assert_eq!(from, peer.local_addr().unwrap());
        pinned
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(
            pinned.recv_from(&mut buf).is_err(),
            "the stranger's never came"
        );
    }

    #[test]
    fn a_socket_this_process_does_not_hold_is_not_found() {
        let error = pin(
            "127.0.0.1:9".parse().unwrap(),
            "127.0.0.1:10".parse().unwrap(),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("/proc"), "{error:#}");
    }
}
