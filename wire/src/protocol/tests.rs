//! Property and edge tests of the wire codec.

use super::*;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn arb_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Nothing),
        Just(Outcome::ComeBackLater),
        (any::<u16>(), proptest::collection::vec(any::<u32>(), 0..20))
            .prop_map(|(sponsor, resources)| Outcome::Greeting { sponsor, resources }),
        (arb_bytes(), any::<u16>(), any::<u32>()).prop_map(|(token, sponsor, amount_cents)| {
            Outcome::Envelope {
                token,
                sponsor,
                amount_cents,
            }
        }),
    ]
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u64>(), arb_bytes()).prop_map(|(user_id, auth_token)| Frame::Hello {
            user_id,
            auth_token
        }),
        (
            any::<u64>(),
            any::<u8>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(s, t, i, c, d)| Frame::HelloAck {
                server_time_ms: s,
                tier: t,
                shake_interval_ms: i,
                config_version: c,
                countdown_ms: d,
            }),
        Just(Frame::Heartbeat),
        any::<u64>().prop_map(|s| Frame::HeartbeatAck { server_time_ms: s }),
        arb_bytes().prop_map(|cookie| Frame::Shake { cookie }),
        (
            arb_outcome(),
            any::<u8>(),
            any::<u32>(),
            arb_bytes(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(
                |(outcome, tier, shake_interval_ms, cookie, config_version, countdown_ms)| {
                    Frame::ShakeReply {
                        outcome,
                        tier,
                        shake_interval_ms,
                        cookie,
                        config_version,
                        countdown_ms,
                    }
                }
            ),
        arb_bytes().prop_map(|token| Frame::Open { token }),
        (any::<u16>(), any::<u32>())
            .prop_map(|(code, amount_cents)| Frame::OpenReply { code, amount_cents }),
        (any::<u16>(), ".{0,40}").prop_map(|(code, message)| Frame::Error { code, message }),
        (arb_bytes(), proptest::collection::vec(any::<u64>(), 0..40))
            .prop_map(|(token, friends)| Frame::Share { token, friends }),
        (
            any::<u16>(),
            any::<u64>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(code, share_id, parts, pot_cents, expires_in_ms)| {
                Frame::ShareReply {
                    code,
                    share_id,
                    parts,
                    pot_cents,
                    expires_in_ms,
                }
            }),
        any::<u64>().prop_map(|share_id| Frame::Grab { share_id }),
        (any::<u16>(), any::<u32>())
            .prop_map(|(code, amount_cents)| Frame::GrabReply { code, amount_cents }),
    ]
}

proptest! {
    #[test]
    fn codec_round_trips(frames in proptest::collection::vec(arb_frame(), 1..8)) {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for f in &frames {
            codec.encode(f.clone(), &mut buf).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            decoded.push(f);
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Frame::decode_payload(&payload);
    }

    #[test]
    fn arbitrary_streams_never_panic(stream in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&stream[..]);
        // Keep decoding until the codec wants more bytes or reports an error.
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }

    #[test]
    fn truncated_frames_are_errors(frame in arb_frame(), cut in 0usize..64) {
        let mut payload = BytesMut::new();
        frame.encode_payload(&mut payload);
        if cut > 0 && cut < payload.len() {
            let short = &payload[..payload.len() - cut];
            prop_assert!(Frame::decode_payload(short).is_err());
        }
    }
}

#[test]
fn oversized_frame_is_refused() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    buf.put_u32((MAX_FRAME_LEN + 1) as u32);
    buf.put_slice(&[0u8; 16]);
    assert!(matches!(codec.decode(&mut buf), Err(CodecError::TooLarge)));
}

#[test]
fn wrong_version_names_the_version() {
    let err = Frame::decode_payload(&[9, 0x03]).unwrap_err();
    assert_eq!(err, DecodeError::Version(9));
    assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
}

#[test]
fn error_codes_round_trip() {
    for code in 0..=u16::MAX {
        if let Some(c) = ErrorCode::from_u16(code) {
            assert_eq!(c as u16, code);
        }
    }
}

#[test]
fn every_error_code_is_listed_once() {
    let decodable: Vec<ErrorCode> = (0..=u16::MAX).filter_map(ErrorCode::from_u16).collect();
    assert_eq!(decodable.len(), ErrorCode::ALL.len());
    for code in ErrorCode::ALL {
        assert!(decodable.contains(&code), "{code:?} missing from ALL");
    }
}
