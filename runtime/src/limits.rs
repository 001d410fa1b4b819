//! Per-app limits, and the wasmtime resource limiter that enforces the
//! memory limit inside each store.

use std::time::Duration;

use crate::state::KvLimits;

/// The limits an app runs under. Every one is on by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Deadline for one request: instantiation, handler and response body.
    pub timeout: Duration,
    /// Memory one instance may use, in bytes: its linear memories together,
    /// and the host memory its resources hold (header fields, unsent
    /// bodies, table entries).
    pub memory: u64,
    /// Instances of this app alive at once.
    pub max_concurrency: usize,
    /// Requests allowed to wait for an instance beyond `max_concurrency`;
    /// past that a request is refused at once with 503.
    pub max_queue: usize,
    /// Key sizes, value sizes and the quota of the app's stores.
    pub kv: KvLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory: 128 << 20,
            max_concurrency: 100,
            max_queue: 1000,
            kv: KvLimits::default(),
        }
    }
}

/// Enforces [`Limits::memory`] on what a store holds: its linear memories
/// and the host memory its resources pin (`host_memory.rs`, charged at
/// every epoch tick). It remembers whether the guest hit the limit, so a
/// trap that follows (Rust guests abort on allocation failure) is reported
/// as what it is.
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Bytes of linear memory the store's memories have now.
    linear: usize,
    /// Bytes of host memory its resources held at the last charge.
    host: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            linear: 0,
            host: 0,
            hit: false,
        }
    }

    /// Records that the store's resources hold `bytes` of host memory;
    /// `false` (and the limit marked hit) when that and its linear memory
    /// are over the limit.
    pub(crate) fn charge_host(&mut self, bytes: u64) -> bool {
        self.host = usize::try_from(bytes).unwrap_or(usize::MAX);
        if self.linear.saturating_add(self.host) > self.limit {
            self.hit = true;
            return false;
        }
        true
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let linear = self.linear.saturating_sub(current).saturating_add(desired);
        if linear.saturating_add(self.host) > self.limit || maximum.is_some_and(|max| desired > max)
        {
            self.hit = true;
            return Ok(false);
        }
        self.linear = linear;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn growth_past_the_limit_is_refused_and_remembered() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!limiter.hit);
        assert!(!limiter.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert!(limiter.hit);
    }

    #[test]
    fn host_memory_and_linear_memory_share_the_limit() {
        let mut limiter = MemoryLimiter::new(4 << 20);
        assert!(limiter.memory_growing(0, 3 << 20, None).unwrap());
        assert!(limiter.charge_host(512 << 10));
        assert!(!limiter.hit);
        // Growth that fits alone, but not beside what the host holds.
        assert!(
            !limiter
                .memory_growing(3 << 20, (3 << 20) + (768 << 10), None)
                .unwrap()
        );
        assert!(limiter.hit);
        let mut limiter = MemoryLimiter::new(4 << 20);
        assert!(limiter.memory_growing(0, 3 << 20, None).unwrap());
        assert!(!limiter.charge_host(2 << 20));
        assert!(limiter.hit);
    }
}
