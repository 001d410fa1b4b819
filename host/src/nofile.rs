//! The process's open-file limit (`RLIMIT_NOFILE`), read from
//! `/proc/self/limits` so no `unsafe` or libc call is needed, and the
//! connection caps sized from it: the listeners together leave room for
//! everything else a host opens (gossip, peer sync, forwarding, guests'
//! outbound calls, the database and component files).

/// Descriptors kept for what is not a listener's connection at all: the
/// runtime's epoll and eventfds, the database and its journal, gossip
/// sockets, the compile worker's pipes, stdio.
const BASE: u64 = 64;
/// The ingress's default cap never goes past this, however high the
/// limit: each connection also costs memory.
const MAX_INGRESS: u64 = 65_536;
/// The admin API's default cap never goes past this.
const MAX_ADMIN: u64 = 1024;
/// Assumed when the limit cannot be read (the usual soft limit).
const UNKNOWN: u64 = 1024;

/// Default connection caps of a host's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    pub ingress: usize,
    pub admin: usize,
}

/// The soft limit on open files, if `/proc` says.
pub(crate) fn soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_soft_limit(&limits)
}

/// The soft limit, or the usual default when it cannot be read.
pub(crate) fn soft_limit_or_default() -> u64 {
    soft_limit().unwrap_or(UNKNOWN)
}

/// `Max open files  SOFT  HARD  files` in `/proc/self/limits`;
/// `unlimited` is `u64::MAX`.
fn parse_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        number => number.parse().ok(),
    }
}

/// The caps for an open-file limit of `limit`: past [`BASE`], five eighths
/// for the ingress and one eighth for the admin API; the last quarter stays
/// free for peer sync, forwarding and guests' outbound connections.
pub(crate) fn caps(limit: u64) -> Caps {
    let spare = limit.saturating_sub(BASE).max(16);
    let ingress = (spare / 8 * 5).clamp(8, MAX_INGRESS);
    let admin = (spare / 8).clamp(4, MAX_ADMIN);
    Caps {
        ingress: ingress as usize,
        admin: admin as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             96362                96362                processes \n\
                    Max open files            256                  4096                 files     \n";
        assert_eq!(parse_soft_limit(text), Some(256));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_soft_limit(unlimited), Some(u64::MAX));
        assert_eq!(parse_soft_limit("nothing here"), None);
        // This process has one, whatever it is.
        assert!(soft_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn caps_leave_room_for_the_rest_of_the_host() {
        let small = caps(256);
        assert_eq!(
            small,
            Caps {
                ingress: 120,
                admin: 24
            }
        );
        assert!(small.ingress + small.admin + BASE as usize + 40 <= 256);
        let usual = caps(1024);
        assert_eq!(
            usual,
            Caps {
                ingress: 600,
                admin: 120
            }
        );
        assert_eq!(caps(u64::MAX).ingress, MAX_INGRESS as usize);
        assert_eq!(caps(u64::MAX).admin, MAX_ADMIN as usize);
        // Even an absurdly low limit leaves each listener something.
        assert!(caps(10).ingress >= 8 && caps(10).admin >= 4);
    }
}
