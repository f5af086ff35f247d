//! The internal RPC decoder (length-delimited postcard messages): arbitrary bytes from
//! a peer decode to a message or an error, never a panic; a decoded message encodes and
//! decodes back to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sut_wire::rpc::RpcCodec;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let mut codec = RpcCodec::default();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(msg)) = codec.decode(&mut buf) {
        let mut out = BytesMut::new();
        RpcCodec::default()
            .encode(msg.clone(), &mut out)
            .expect("a decoded message encodes");
        let back = RpcCodec::default().decode(&mut out).expect("decodes");
        assert_eq!(back, Some(msg));
    }
});
