//! Listing a store's keys a page at a time, following the host's cursor.

use super::error::KvError;

/// One page of keys and the cursor of the next (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// The keys, in the host's order (Shoal's: the order they were first
    /// written).
    pub keys: Vec<String>,
    /// Pass it to [`Store::keys_page`](super::Store::keys_page) for the
    /// next page; `None` after the last one.
    pub cursor: Option<String>,
}

/// Where pages come from: a store, or a test's list.
pub(crate) trait Pages {
    fn page(&mut self, cursor: Option<&str>) -> Result<KeyPage, KvError>;
}

/// Follows the cursor through a store's pages, holding one at a time.
#[derive(Debug)]
pub(crate) struct Pager<P> {
    source: P,
    page: std::vec::IntoIter<String>,
    next: Next,
}

#[derive(Debug)]
enum Next {
    First,
    After(String),
    Done,
}

impl<P> Pager<P> {
    pub(crate) fn new(source: P) -> Pager<P> {
        Pager {
            source,
            page: Vec::new().into_iter(),
            next: Next::First,
        }
    }
}

impl<P: Pages> Iterator for Pager<P> {
    type Item = Result<String, KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(key) = self.page.next() {
                return Some(Ok(key));
            }
            let cursor = match std::mem::replace(&mut self.next, Next::Done) {
                Next::Done => return None,
                Next::First => None,
                Next::After(cursor) => Some(cursor),
            };
            let page = match self.source.page(cursor.as_deref()) {
                Ok(page) => page,
                Err(error) => return Some(Err(error)),
            };
            // A host answering an empty page with the cursor it was given
            // would loop forever: end there.
            let stuck = page.keys.is_empty() && page.cursor.is_some() && page.cursor == cursor;
            if let (Some(next), false) = (page.cursor, stuck) {
                self.next = Next::After(next);
            }
            self.page = page.keys.into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `size` keys out of `keys`, the cursor being the next
    /// index; counts the calls.
    struct Listed {
        keys: Vec<String>,
        size: usize,
        calls: usize,
        fail_at: Option<usize>,
    }

    impl Pages for &mut Listed {
        fn page(&mut self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
            self.calls += 1;
            let start: usize = cursor.map_or(0, |c| c.parse().unwrap());
            if self.fail_at == Some(start) {
                return Err(KvError::Other {
                    store: "default".into(),
                    key: None,
                    message: "disk on fire".into(),
                });
            }
            let end = (start + self.size).min(self.keys.len());
            Ok(KeyPage {
                keys: self.keys[start..end].to_vec(),
                cursor: (end < self.keys.len()).then(|| end.to_string()),
            })
        }
    }

    fn listed(n: usize, size: usize) -> Listed {
        Listed {
            keys: (0..n).map(|i| format!("k{i}")).collect(),
            size,
            calls: 0,
            fail_at: None,
        }
    }

    #[test]
    fn every_key_once_one_page_at_a_time() {
        let mut store = listed(2500, 1000);
        let keys: Vec<String> = Pager::new(&mut store).map(Result::unwrap).collect();
        assert_eq!(keys, store.keys);
        assert_eq!(store.calls, 3);

        let mut empty = listed(0, 1000);
        assert_eq!(Pager::new(&mut empty).count(), 0);
        assert_eq!(empty.calls, 1);
    }

    #[test]
    fn pages_are_fetched_only_when_reached() {
        let mut store = listed(2500, 1000);
        let first: Vec<_> = Pager::new(&mut store).take(1000).collect();
        assert_eq!(first.len(), 1000);
        assert_eq!(store.calls, 1, "the second page was not needed");
    }

    #[test]
    fn a_failed_page_is_one_error_then_the_end() {
        let mut store = listed(2500, 1000);
        store.fail_at = Some(1000);
        let items: Vec<_> = Pager::new(&mut store).collect();
        assert_eq!(items.len(), 1001);
        assert!(items[..1000].iter().all(Result::is_ok));
        assert!(
            items[1000]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("disk on fire")
        );
    }

    #[test]
    fn a_host_repeating_its_cursor_on_an_empty_page_does_not_loop() {
        struct Stuck(usize);
        impl Pages for &mut Stuck {
            fn page(&mut self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
                self.0 += 1;
                Ok(match cursor {
                    None => KeyPage {
                        keys: vec!["a".into()],
                        cursor: Some("c".into()),
                    },
                    Some(_) => KeyPage {
                        keys: vec![],
                        cursor: Some("c".into()),
                    },
                })
            }
        }
        let mut stuck = Stuck(0);
        assert_eq!(Pager::new(&mut stuck).count(), 1);
        assert_eq!(stuck.0, 2);
    }
}
