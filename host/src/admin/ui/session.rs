//! Dashboard sessions: one-time login links, the session cookie, CSRF.
