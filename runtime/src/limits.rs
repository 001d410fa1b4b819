//! Per-app limits, and the wasmtime resource limiter that enforces the
//! memory limit inside each store.

use std::time::Duration;

/// The limits an app runs under. Every one is on by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Deadline for one request: instantiation, handler and response body.
    pub timeout: Duration,
    /// Maximum size of any one linear memory of an instance, in bytes.
    pub memory: u64,
    /// Instances of this app alive at once.
    pub max_concurrency: usize,
    /// Requests allowed to wait for an instance beyond `max_concurrency`;
    /// past that a request is refused at once with 503.
    pub max_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory: 128 << 20,
            max_concurrency: 100,
            max_queue: 1000,
        }
    }
}

/// Enforces [`Limits::memory`] and remembers whether the guest hit it, so a
/// trap that follows (Rust guests abort on allocation failure) is reported
/// as what it is.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit || maximum.is_some_and(|max| desired > max) {
            self.hit = true;
            return Ok(false);
        }
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
}
