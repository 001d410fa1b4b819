//! Peer answers bound to their request. An answer is sealed under
//! [`Purpose::PeerHttp`] with the request's token as associated data, and
//! every token holds a fresh random nonce, so an answer opens only for the
//! request it answers: one captured on the wire cannot be replayed to
//! another request (an old record set, say, from before a removal).

use super::key::{KeyError, Purpose};
use super::keyring::Keyring;

/// The associated data of an answer to the request carrying `token`.
fn bound(token: &str) -> Vec<u8> {
    let mut aad = b"peer-answer\0".to_vec();
    aad.extend_from_slice(token.trim().as_bytes());
    aad
}

/// Seals `plain` as the answer to the request that carried `token`.
pub(crate) fn seal(key: &Keyring, token: &str, plain: &[u8]) -> Vec<u8> {
    key.current()
        .primary()
        .seal_with_aad(Purpose::PeerHttp, &bound(token), plain)
}

/// Opens the answer to the request this node sent with `token`, sealed
/// under any key of the ring.
pub(crate) fn open(key: &Keyring, token: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    key.current()
        .open_with_aad(Purpose::PeerHttp, &bound(token), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::key::ClusterKey;

    #[test]
    fn an_answer_opens_only_for_its_own_request() {
        let key = Keyring::single(ClusterKey::generate());
        let first = key.peer_token("GET", "/v1/peer/state");
        let second = key.peer_token("GET", "/v1/peer/state");
        assert_ne!(first, second);
        let answer = seal(&key, &first, b"records");
        assert_eq!(open(&key, &first, &answer).unwrap(), b"records");
        // Replayed to a later request of the same kind: refused.
        assert!(open(&key, &second, &answer).is_err());
        // An answer sealed the unbound way does not open as a bound one,
        // nor the other way round.
        assert!(open(&key, &first, &key.seal(Purpose::PeerHttp, b"records")).is_err());
        assert!(key.open(Purpose::PeerHttp, &answer).is_err());
        assert!(open(&Keyring::single(ClusterKey::generate()), &first, &answer).is_err());
    }
}
