//! Dashboard sessions: one-time login links, the session cookie, CSRF.
//!
//! `POST /v1/ui/login` (with the admin token) issues a code, good once
//! and for [`CODE_LIFETIME`]; `GET /ui/login?code=` trades it for a
//! session: an id sent back as an HttpOnly, SameSite=Strict cookie, and a
//! CSRF token the page echoes in `X-Shoal-CSRF` on every POST. Both live
//! in memory only (a restart logs everyone out), at most
//! [`MAX_SESSIONS`] sessions for [`SESSION_LIFETIME`], the oldest evicted
//! first. Secrets are kept as their sha256, so a lookup's timing says
//! nothing of the secret itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// How long a login link works.
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a session lasts.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Live sessions at most; a new one evicts the oldest.
pub(crate) const MAX_SESSIONS: usize = 64;
/// Unused login codes at most; a new one evicts the oldest.
const MAX_CODES: usize = 64;
/// The session cookie's name.
pub(crate) const COOKIE: &str = "shoal_session";

type Key = [u8; 32];

/// The codes and sessions of one admin listener.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Login codes, to when each was issued.
    codes: HashMap<Key, Instant>,
    sessions: HashMap<Key, Session>,
}

#[derive(Debug)]
struct Session {
    csrf: String,
    started: Instant,
}

/// A session just started by a login code.
#[derive(Debug)]
pub(crate) struct Started {
    /// The cookie's value: 64 hex digits.
    pub id: String,
    /// The page's CSRF token: 32 hex digits.
    pub csrf: String,
}

impl Sessions {
    /// A new login code (64 hex digits), good once for [`CODE_LIFETIME`].
    pub(crate) fn issue(&self, now: Instant) -> String {
        let code = random_hex(32);
        let mut inner = self.lock();
        inner
            .codes
            .retain(|_, at| now.duration_since(*at) < CODE_LIFETIME);
        evict_oldest(&mut inner.codes, MAX_CODES, |at| *at);
        inner.codes.insert(key(&code), now);
        code
    }

    /// Trades a login code for a session; `None` if it was never issued,
    /// was used, or has expired. A code works once, even if it fails.
    pub(crate) fn redeem(&self, code: &str, now: Instant) -> Option<Started> {
        let mut inner = self.lock();
        let issued = inner.codes.remove(&key(code))?;
        if now.duration_since(issued) >= CODE_LIFETIME {
            return None;
        }
        let started = Started {
            id: random_hex(32),
            csrf: random_hex(16),
        };
        inner
            .sessions
            .retain(|_, s| now.duration_since(s.started) < SESSION_LIFETIME);
        evict_oldest(&mut inner.sessions, MAX_SESSIONS, |s| s.started);
        inner.sessions.insert(
            key(&started.id),
            Session {
                csrf: started.csrf.clone(),
                started: now,
            },
        );
        Some(started)
    }

    /// The CSRF token of live session `id`.
    pub(crate) fn csrf(&self, id: &str, now: Instant) -> Option<String> {
        let mut inner = self.lock();
        let key = key(id);
        let session = inner.sessions.get(&key)?;
        if now.duration_since(session.started) >= SESSION_LIFETIME {
            inner.sessions.remove(&key);
            return None;
        }
        Some(session.csrf.clone())
    }

    /// Ends session `id` (logout).
    pub(crate) fn end(&self, id: &str) {
        self.lock().sessions.remove(&key(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Makes room for one more entry in `map` (at most `max`), dropping the
/// oldest by `at`.
fn evict_oldest<V>(map: &mut HashMap<Key, V>, max: usize, at: impl Fn(&V) -> Instant) {
    while map.len() >= max {
        let oldest = map.iter().min_by_key(|(_, v)| at(v)).map(|(k, _)| *k);
        match oldest {
            Some(oldest) => map.remove(&oldest),
            None => return,
        };
    }
}

fn key(secret: &str) -> Key {
    Sha256::digest(secret.as_bytes()).into()
}

/// `bytes` random bytes from the operating system, as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    hex::encode(buf)
}

/// The session id a request's `Cookie` headers carry.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// The `Set-Cookie` value that starts session `id`.
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends it in the browser.
pub(crate) fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once_and_only_while_fresh() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let code = sessions.issue(t0);
        assert_eq!(code.len(), 64);
        let started = sessions
            .redeem(&code, t0 + Duration::from_secs(59))
            .unwrap();
        assert_eq!((started.id.len(), started.csrf.len()), (64, 32));
        assert!(sessions.redeem(&code, t0).is_none(), "a code worked twice");
        let late = sessions.issue(t0);
        assert!(sessions.redeem(&late, t0 + CODE_LIFETIME).is_none());
        assert!(sessions.redeem("0".repeat(64).as_str(), t0).is_none());
        assert!(sessions.redeem("", t0).is_none());
    }

    #[test]
    fn a_session_has_its_csrf_token_until_it_expires_or_ends() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let a = sessions.redeem(&sessions.issue(t0), t0).unwrap();
        let b = sessions.redeem(&sessions.issue(t0), t0).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(sessions.csrf(&a.id, t0).as_deref(), Some(a.csrf.as_str()));
        let almost = t0 + SESSION_LIFETIME - Duration::from_secs(1);
        assert!(sessions.csrf(&a.id, almost).is_some());
        assert!(sessions.csrf(&a.id, t0 + SESSION_LIFETIME).is_none());
        // Expired is gone, even if asked with an earlier clock.
        assert!(sessions.csrf(&a.id, t0).is_none());
        sessions.end(&b.id);
        assert!(sessions.csrf(&b.id, t0).is_none());
        assert!(sessions.csrf("", t0).is_none());
    }

    #[test]
    fn past_the_cap_the_oldest_session_and_code_are_evicted() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let at = |i: usize| t0 + Duration::from_millis(i as u64);
        let started: Vec<Started> = (0..=MAX_SESSIONS)
            .map(|i| sessions.redeem(&sessions.issue(at(i)), at(i)).unwrap())
            .collect();
        let now = at(MAX_SESSIONS);
        assert!(sessions.csrf(&started[0].id, now).is_none(), "not evicted");
        for s in &started[1..] {
            assert!(sessions.csrf(&s.id, now).is_some());
        }
        let codes: Vec<String> = (0..=MAX_CODES).map(|i| sessions.issue(at(i))).collect();
        assert!(sessions.redeem(&codes[0], now).is_none(), "not evicted");
        assert!(sessions.redeem(&codes[MAX_CODES], now).is_some());
    }

    #[test]
    fn the_cookie_is_found_among_others_and_set_with_its_flags() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "a=1; shoal_session=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers).as_deref(), Some("abc"));
        assert_eq!(cookie(&HeaderMap::new()), None);
        let plain = set_cookie("abc", false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Path=/ui;") && !plain.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
