//! Fuzzes `josefine::codec::decode_request`, the exact function the server runs on every
//! frame, with the broker's allocator guard installed (it comes with the `josefine` crate).
//!
//! Input layout: if the first byte has its top bit set, the rest is a raw frame (any API key,
//! any version). Otherwise byte 0 picks one served API (modulo the table), byte 1 one of its
//! served versions, and the rest follows a valid header prefix (key, version, correlation id),
//! so most executions reach the body decoders of the APIs we actually serve.
//! Invariants checked: no panic, no abort (the allocator guard turns hostile with_capacity
//! counts into cheap reserve-only mappings), and no guarded mapping outlives the decode.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use josefine::api_versions::SUPPORTED_APIS;
use josefine::codec::decode_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let frame = if selector & 0x80 != 0 {
        Bytes::copy_from_slice(rest)
    } else {
        let api = &SUPPORTED_APIS[selector as usize % SUPPORTED_APIS.len()];
        let Some((&v, body)) = rest.split_first() else { return };
        let span = (api.max - api.served_min + 1) as u8;
        let version = api.served_min + (v % span) as i16;
        let mut f = BytesMut::with_capacity(8 + body.len());
        f.put_i16(api.key as i16);
        f.put_i16(version);
        f.put_i32(7);
        f.put_slice(body);
        f.freeze()
    };
    let _ = decode_request(frame);
    assert_eq!(josefine::alloc_guard::guarded_bytes_mapped(), 0, "a guarded mapping leaked");
});
