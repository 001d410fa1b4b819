//! TLS for the host's listeners (rustls on the ring provider): a server
//! configuration from PEM files (`server`) or from a self-signed pair kept
//! in the data dir (`self_signed`), and the connection a listener hands to
//! hyper (`stream`). The admin API's Host check trusts the names its
//! certificate covers.

mod self_signed;
mod server;
mod stream;

pub(crate) use self_signed::{CERT_FILE, self_signed};
pub(crate) use server::{ListenerTls, ServerTls};
pub(crate) use stream::{Encrypted, accept};
