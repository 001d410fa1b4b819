//! The compare-and-swap retry loop behind [`Store::cas`](super::Store::cas).

use crate::bindings::wasi::keyvalue::{atomics, store};

/// How many swaps [`Store::cas`](super::Store::cas) tries before it gives
/// up with [`KvError::Contended`](super::KvError::Contended). Each failed
/// swap means another writer's succeeded, so the store as a whole always
/// makes progress; this bounds how long one caller can keep losing.
pub const CAS_ATTEMPTS: u32 = 100;

/// One compare-and-swap handle: the host's `cas` resource, or a test's.
pub(crate) trait Swap: Sized {
    /// The value the handle was taken at.
    fn current(&self) -> Result<Option<Vec<u8>>, store::Error>;
    /// Writes `value` if the key still holds what `current` saw;
    /// otherwise a handle on the newer value.
    fn swap(self, value: &[u8]) -> Result<(), Lost<Self>>;
}

/// Why a swap did not happen.
pub(crate) enum Lost<C> {
    /// Another write got there first; here is a handle on the new value.
    Race(C),
    /// The store failed.
    Store(store::Error),
}

/// Why the whole loop failed.
#[derive(Debug)]
pub(crate) enum Failed {
    Store(store::Error),
    Contended(u32),
}

/// Calls `update` on the value `cas` holds and swaps its result in, again
/// on each newer value until one swap wins (at most `attempts` tries).
/// Returns the value written, or `None` if `update` declined to write.
pub(crate) fn retry<C: Swap>(
    mut cas: C,
    attempts: u32,
    mut update: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
) -> Result<Option<Vec<u8>>, Failed> {
    for _ in 0..attempts {
        let current = cas.current().map_err(Failed::Store)?;
        let Some(value) = update(current.as_deref()) else {
            return Ok(None);
        };
        match cas.swap(&value) {
            Ok(()) => return Ok(Some(value)),
            Err(Lost::Race(newer)) => cas = newer,
            Err(Lost::Store(error)) => return Err(Failed::Store(error)),
        }
    }
    Err(Failed::Contended(attempts))
}

impl Swap for atomics::Cas {
    fn current(&self) -> Result<Option<Vec<u8>>, store::Error> {
        atomics::Cas::current(self)
    }

    fn swap(self, value: &[u8]) -> Result<(), Lost<Self>> {
        atomics::swap(self, value).map_err(|error| match error {
            atomics::CasError::CasFailed(newer) => Lost::Race(newer),
            atomics::CasError::StoreError(error) => Lost::Store(error),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A key in memory that `rivals` other writers change before each of
    /// our first swaps.
    struct Contested<'a> {
        value: &'a RefCell<Option<Vec<u8>>>,
        seen: Option<Vec<u8>>,
        rivals: &'a RefCell<u32>,
    }

    impl<'a> Contested<'a> {
        fn take(value: &'a RefCell<Option<Vec<u8>>>, rivals: &'a RefCell<u32>) -> Self {
            let seen = value.borrow().clone();
            Contested {
                value,
                seen,
                rivals,
            }
        }
    }

    impl Swap for Contested<'_> {
        fn current(&self) -> Result<Option<Vec<u8>>, store::Error> {
            Ok(self.seen.clone())
        }

        fn swap(self, value: &[u8]) -> Result<(), Lost<Self>> {
            if *self.rivals.borrow() > 0 {
                *self.rivals.borrow_mut() -= 1;
                let mut stored = self.value.borrow_mut();
                let mut rival = stored.clone().unwrap_or_default();
                rival.push(b'r');
                *stored = Some(rival);
            }
            if *self.value.borrow() != self.seen {
                return Err(Lost::Race(Contested::take(self.value, self.rivals)));
            }
            *self.value.borrow_mut() = Some(value.to_vec());
            Ok(())
        }
    }

    fn append_a(current: Option<&[u8]>) -> Option<Vec<u8>> {
        let mut value = current.unwrap_or_default().to_vec();
        value.push(b'a');
        Some(value)
    }

    #[test]
    fn retries_on_each_newer_value_until_a_swap_wins() {
        let value = RefCell::new(None);
        let rivals = RefCell::new(3);
        let mut calls = 0;
        let written = retry(Contested::take(&value, &rivals), 10, |current| {
            calls += 1;
            append_a(current)
        })
        .unwrap();
        assert_eq!(written.as_deref(), Some(&b"rrra"[..]));
        assert_eq!(*value.borrow(), Some(b"rrra".to_vec()));
        assert_eq!(calls, 4, "once per attempt");
    }

    #[test]
    fn gives_up_after_the_attempts_without_writing() {
        let value = RefCell::new(Some(b"x".to_vec()));
        let rivals = RefCell::new(5);
        let failed = retry(Contested::take(&value, &rivals), 5, append_a);
        assert!(matches!(failed, Err(Failed::Contended(5))), "{failed:?}");
        assert_eq!(
            *value.borrow(),
            Some(b"xrrrrr".to_vec()),
            "only the rivals wrote"
        );
    }

    #[test]
    fn declining_writes_nothing() {
        let value = RefCell::new(Some(b"x".to_vec()));
        let rivals = RefCell::new(1);
        let mut seen = Vec::new();
        let written = retry(Contested::take(&value, &rivals), 10, |current| {
            seen.push(current.map(<[u8]>::to_vec));
            // Write once; on the newer value, decline.
            (seen.len() == 1).then(|| b"mine".to_vec())
        });
        assert!(matches!(written, Ok(None)), "{written:?}");
        assert_eq!(seen, [Some(b"x".to_vec()), Some(b"xr".to_vec())]);
        assert_eq!(*value.borrow(), Some(b"xr".to_vec()));
    }

    #[test]
    fn a_store_error_ends_the_loop() {
        struct Broken;
        impl Swap for Broken {
            fn current(&self) -> Result<Option<Vec<u8>>, store::Error> {
                Ok(None)
            }
            fn swap(self, _: &[u8]) -> Result<(), Lost<Self>> {
                Err(Lost::Store(store::Error::Other("quota".into())))
            }
        }
        let failed = retry(Broken, 10, append_a);
        assert!(
            matches!(&failed, Err(Failed::Store(store::Error::Other(why))) if why == "quota"),
            "{failed:?}"
        );
    }
}
