//! The figures the dashboard shows, for the whole mesh: gathered from
//! every live peer over the peer API, kept for the last minutes.
