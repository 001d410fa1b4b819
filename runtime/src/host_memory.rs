//! What a guest holds on the host's heap, outside its linear memory: the
//! entries of its store's resource table (header fields, requests and
//! responses it built, bodies it wrote and nobody sent). The store's
//! memory limiter charges these bytes to the app's memory limit, so a
//! guest cannot pin host memory by making resources instead of growing
//! its memory.
//!
//! The walk is an estimate, made at every epoch tick: each entry costs
//! [`ENTRY`] bytes, header fields their content, an unsent outgoing body
//! the most its buffer holds, a pending outbound response its
//! connection's buffers. Header maps shared between entries (every
//! `headers()` call hands out the same map again) count once.

use std::collections::HashSet;

use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, HostIncomingResponse, HostOutgoingRequest, HostOutgoingResponse,
};

/// Resources one store may hold at once (wasmtime allows a million).
pub(crate) const MAX_TABLE_ENTRIES: usize = 16 << 10;

/// The most one fields resource may hold, as wasmtime-wasi-http counts its
/// in-memory size (its default is 128 KiB).
pub(crate) const MAX_FIELDS_SIZE: usize = 64 << 10;

/// What one table entry costs beyond what it points to: the boxed value,
/// its slot, and wasmtime's handle for it.
const ENTRY: u64 = 256;

/// What an outbound request in flight holds on the host (its connection's
/// read and write buffers), whatever the guest sent.
const PENDING_RESPONSE: u64 = 64 << 10;

/// Bytes of host memory the resources in `table` hold; an outgoing body
/// not handed to a connection yet is charged `unsent_body` (the most its
/// buffer holds).
pub(crate) fn held(table: &mut ResourceTable, unsent_body: u64) -> u64 {
    let mut maps = Maps::default();
    let mut total = 0u64;
    for entry in table.iter_mut() {
        total += ENTRY;
        let entry: &(dyn std::any::Any + Send) = entry;
        if let Some(fields) = entry.downcast_ref::<FieldMap>() {
            total += maps.size(fields);
        } else if let Some(response) = entry.downcast_ref::<HostOutgoingResponse>() {
            total += maps.size(&response.headers);
            total += if response.body.is_some() {
                unsent_body
            } else {
                0
            };
        } else if let Some(request) = entry.downcast_ref::<HostOutgoingRequest>() {
            total += maps.size(&request.headers);
            total += if request.body.is_some() {
                unsent_body
            } else {
                0
            };
        } else if let Some(response) = entry.downcast_ref::<HostIncomingResponse>() {
            total += maps.size(&response.headers);
        } else if let Some(pending) = entry.downcast_ref::<HostFutureIncomingResponse>() {
            if !matches!(pending, HostFutureIncomingResponse::Consumed) {
                total += PENDING_RESPONSE;
            }
        } else if let Some(request) = entry.downcast_ref::<wasmtime_wasi_http::p3::Request>() {
            total += maps.size(&request.headers);
        } else if let Some(response) = entry.downcast_ref::<wasmtime_wasi_http::p3::Response>() {
            total += maps.size(&response.headers);
        }
    }
    total
}

/// The header maps counted so far in one walk, by address.
#[derive(Default)]
struct Maps {
    seen: HashSet<usize>,
}

impl Maps {
    /// The bytes of `fields` if its map was not counted yet, else 0.
    fn size(&mut self, fields: &FieldMap) -> u64 {
        let map: &http::HeaderMap = fields;
        if map.is_empty() || !self.seen.insert(std::ptr::from_ref(map) as usize) {
            return 0;
        }
        // As wasmtime-wasi-http counts it: names and values with the size of
        // their representation.
        let names = map
            .keys()
            .map(|k| k.as_str().len() + size_of::<http::HeaderName>());
        let values = map
            .values()
            .map(|v| v.len() + size_of::<http::HeaderValue>());
        names.chain(values).sum::<usize>() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Hooks for a field map built outside a store; nothing is sent.
    struct NoSending;

    type Done = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

    impl wasmtime_wasi_http::WasiHttpHooks for NoSending {
        fn send_request(
            &mut self,
            _: http::Request<wasmtime_wasi_http::WasiBody>,
            _: Option<wasmtime_wasi_http::RequestOptions>,
            _: Done,
        ) -> Box<
            dyn Future<
                    Output = Result<
                        (http::Response<wasmtime_wasi_http::WasiBody>, Done),
                        wasmtime_wasi_http::Error,
                    >,
                > + Send,
        > {
            unreachable!("the test sends nothing")
        }
    }

    #[test]
    fn entries_fields_and_unsent_bodies_are_charged_and_shared_maps_count_once() {
        let mut table = ResourceTable::new();
        assert_eq!(held(&mut table, 1 << 20), 0);
        let mut fields = FieldMap::new_mutable(MAX_FIELDS_SIZE);
        fields
            .append(&mut NoSending, "x-big".into(), vec![b'a'; 10_000])
            .unwrap();
        let shared = fields.clone();
        table.push(fields).unwrap();
        let one = held(&mut table, 1 << 20);
        assert!(
            (10_000 + ENTRY..10_000 + ENTRY + 200).contains(&one),
            "{one}"
        );
        // The same map handed out again costs only its entry.
        table.push(shared).unwrap();
        assert_eq!(held(&mut table, 1 << 20), one + ENTRY);
        table
            .push(HostOutgoingResponse {
                status: http::StatusCode::OK,
                headers: FieldMap::default(),
                body: Some(
                    http_body_util::Empty::new()
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                ),
            })
            .unwrap();
        assert_eq!(held(&mut table, 1 << 20), one + 2 * ENTRY + (1 << 20));
    }
}
