//! The client wire protocol: what a phone says to its gateway over its long connection.
//!
//! The protocol is deliberately tiny and binary so that another client (in any language)
//! can be written from this page alone.
//!
//! # Framing
//! Every frame is `length: u32 big-endian` followed by `length` bytes of payload
//! (tokio-util's length-delimited codec). A payload larger than [`MAX_FRAME_LEN`]
//! (64 KiB) is refused: the gateway answers `Error(TooLarge)` and closes.
//!
//! # Payload
//! `version: u8` (currently [`VERSION`] = 2; version 1 lacked the live timeline's
//! `countdown_ms` and the `ShakeReply`'s `config_version`), `type: u8`, then the body for that type.
//! Integers are big-endian. `bytes` is `u16 length` + that many bytes; `string` is
//! `bytes` holding UTF-8.
//!
//! | type | frame | direction | body |
//! |------|-------|-----------|------|
//! | 0x01 | Hello | c→s | user_id u64, auth_token bytes |
//! | 0x02 | HelloAck | s→c | server_time_ms u64, tier u8, shake_interval_ms u32, config_version u64, countdown_ms u32 |
//! | 0x03 | Heartbeat | c→s | (empty) |
//! | 0x04 | HeartbeatAck | s→c | server_time_ms u64 |
//! | 0x05 | Shake | c→s | cookie bytes (empty when the client has none) |
//! | 0x06 | ShakeReply | s→c | outcome, tier u8, shake_interval_ms u32, cookie bytes, config_version u64, countdown_ms u32 |
//! | 0x07 | Open | c→s | envelope_token bytes |
//! | 0x08 | OpenReply | s→c | code u16 (0 = credited later, for sure), amount_cents u32 |
//! | 0x09 | Share | c→s | envelope_token bytes, count u8, then `count` friend user ids (u64 each) |
//! | 0x0a | ShareReply | s→c | code u16 (0 = shared), share_id u64, parts u8, pot_cents u32, expires_in_ms u32 |
//! | 0x0b | Grab | c→s | share_id u64 |
//! | 0x0c | GrabReply | s→c | code u16 (0 = grabbed: credited later, for sure), amount_cents u32 |
//! | 0x7f | Error | s→c | code u16, message string |
//!
//! `outcome` is `tag: u8` then:
//! - 0 `Nothing`: no body.
//! - 1 `Greeting`: sponsor u16, count u8, then `count` resource ids (u32 each).
//! - 2 `Envelope`: token bytes, sponsor u16, amount_cents u32.
//! - 3 `ComeBackLater`: no body. The gateway is at its top throttle tier and made no
//!   decision; the client waits the reply's `shake_interval_ms`.
//!
//! # The live timeline
//! `config_version` is the schedule version the gateway decided on; it changes during
//! the show when the operator changes the programme (the gateways learn it over their
//! own channels). `countdown_ms` is the time to the next round by that version: 0
//! while a round is on, `u32::MAX` when no round is left. A client shows its countdown
//! from the latest reply, so a moved round moves on every phone with its next reply.
//!
//! # Throttle tiers
//! Every `HelloAck` and `ShakeReply` carries the gateway's throttle tier (0 = normal)
//! and `shake_interval_ms`, the least time the client leaves before its next shake. A
//! client coalesces however many shakes its user makes into at most one request per
//! that interval. Each gateway picks its tier from its own load.
//!
//! The cookie and the envelope token are opaque to the client: it stores the latest
//! cookie and sends it back with the next shake, and sends the token back to open.
//! An envelope may be opened at any gateway (the token is signed with a key all
//! gateways of a deployment share, and bound to the user it was issued to), once the
//! user holds it; `OpenReply` code 0 means the amount will be credited, for sure.
//!
//! # Repeats
//! A request repeated (a retry after a lost reply, or on purpose) gets its original
//! answer again, at every gateway, and moves no money a second time, as an
//! idempotency key does in a payment API: a repeated `Open` of one's own envelope gets
//! code 0 and the amount; a repeated `Grab` of a part one was dealt gets code 0 and
//! that part's amount (even after the pot expired); the same `Share` again (the same
//! friends, in any order) gets the same `share_id`. So a client that lost a reply just
//! sends the request again. (Codes 12 and 38, once `already_opened` and
//! `already_grabbed`, are retired.)
//!
//! # Split envelopes
//! An opened envelope carries a pot of split parts (2 to 5 parts, twice what the opener
//! got). Its opener shares the pot once, to up to [`MAX_SHARE_FRIENDS`] friends, with
//! `Share` and the envelope's token; `ShareReply` names the `share_id` the opener passes
//! on to them (by chat, outside this protocol): it is the shared envelope's id. Friends
//! are the relation chain's: users whose ids fall in the same circle of 256 consecutive
//! ids (`id / 256` equal), the user excepted. Each friend grabs at most one part with
//! `Grab`, over its own long connection; amounts are dealt by the double-mean method.
//! What is not shared or grabbed within the pot's lifetime goes back to the sponsor.
//! A share or grab refused for what the user did (not a friend, to oneself, own share,
//! shared twice to other friends, expired, recycled, ...) has its own code and moves
//! no money;
//! `Unavailable` and `NoSuchShare` right after an open are worth a retry.
//!
//! # Login
//! `auth_token` is the account system's proof of the user id: the first 16 bytes of
//! HMAC-SHA256 under the deployment's auth key (`auth.key` in the data directory) over
//! `u32 big-endian length of "auth"`, `"auth"`, then `user_id` as u64 big-endian.
//!
//! # Order and deadlines
//! The first client frame must be `Hello`, within the gateway's hello deadline
//! (`--hello-timeout`, 10 s) of connecting; anything else gets `Error(NotHelloFirst)`,
//! silence `Error(HelloTimeout)`, and a close. Requests on one connection are answered
//! in order; any request may be answered by `Error` instead of its reply (a shake by
//! `Error(CookieInvalid)` or `Error(FieldTooLarge)`, for instance). A client that sends
//! nothing (not even `Heartbeat`) for the heartbeat timeout is closed with
//! `Error(HeartbeatTimeout)`; one that begins a frame and does not finish it within the
//! frame deadline (`--frame-timeout`, 10 s) with `Error(FrameTimeout)`; one that does
//! not read its replies within the write deadline (`--write-timeout`, 10 s) is closed
//! without a word. Each user may have about `--frames-per-second` (20) frames a second
//! handled over all their connections, with bursts of twice that: frames sent faster
//! are read later, never refused, so a flood only slows its sender.
//!
//! # Error codes
//! The codes are [`ErrorCode`]'s (`Error` frames, and the `code` of `OpenReply`,
//! `ShareReply` and `GrabReply`). After these the gateway closes the connection:
//! `Malformed`, `TooLarge`, `UnsupportedVersion`, `NotHelloFirst`, `AuthFailed`,
//! `HeartbeatTimeout`, `ShuttingDown`, `GatewayFull`, `Overloaded`, `Unexpected`,
//! `HelloTimeout`, `FrameTimeout`. Every other code answers one request and the
//! connection stays open.
//!
//! # Cookies
//! A cookie is at most [`crate::cookie::MAX_COOKIE_LEN`] bytes; a longer one gets
//! `Error(FieldTooLarge)`, a forged or foreign one `Error(CookieInvalid)`, and neither
//! is ever echoed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

#[cfg(feature = "codec")]
mod codec;
#[cfg(feature = "codec")]
mod reader;
#[cfg(feature = "codec")]
pub use codec::{CodecError, FrameCodec};
#[cfg(feature = "codec")]
pub use reader::{flush_rest, write_frame, FrameReader, ReadStatus};

/// The protocol version this build speaks.
pub const VERSION: u8 = 2;
/// The largest payload accepted, in bytes.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// The most resource ids a greeting may name (the count is a u8).
pub const MAX_RESOURCES: usize = u8::MAX as usize;
/// The most friends one share may name.
pub const MAX_SHARE_FRIENDS: usize = 32;

mod error_code;
pub use error_code::ErrorCode;

/// What a shake won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Between rounds, or nothing to show.
    Nothing,
    /// A sponsor's greeting, drawn with resources the client pre-downloaded.
    Greeting { sponsor: u16, resources: Vec<u32> },
    /// A red envelope; `token` opens it.
    Envelope {
        token: Bytes,
        sponsor: u16,
        amount_cents: u32,
    },
    /// The gateway is at its top throttle tier: come back after the reply's interval.
    /// Answered without any work (no decision was made).
    ComeBackLater,
}

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello {
        user_id: u64,
        auth_token: Bytes,
    },
    HelloAck {
        server_time_ms: u64,
        tier: u8,
        /// The least time the client leaves between shakes at this tier.
        shake_interval_ms: u32,
        config_version: u64,
        /// Time to the next round (0: one is on; `u32::MAX`: none left).
        countdown_ms: u32,
    },
    Heartbeat,
    HeartbeatAck {
        server_time_ms: u64,
    },
    Shake {
        cookie: Bytes,
    },
    ShakeReply {
        outcome: Outcome,
        tier: u8,
        /// The least time the client leaves before its next shake.
        shake_interval_ms: u32,
        cookie: Bytes,
        /// The schedule version the shake was decided on.
        config_version: u64,
        /// Time to the next round by that version (as in `HelloAck`).
        countdown_ms: u32,
    },
    Open {
        token: Bytes,
    },
    /// `code` 0 means the open is recorded and will be credited; otherwise an [`ErrorCode`].
    OpenReply {
        code: u16,
        amount_cents: u32,
    },
    /// Shares an opened envelope's pot to friends; `token` is the envelope's token.
    Share {
        token: Bytes,
        friends: Vec<u64>,
    },
    /// `code` 0 means shared: friends grab with `share_id`.
    ShareReply {
        code: u16,
        share_id: u64,
        parts: u8,
        pot_cents: u32,
        expires_in_ms: u32,
    },
    /// Grabs one part of a pot shared to this user.
    Grab {
        share_id: u64,
    },
    /// `code` 0 means grabbed: `amount_cents` is recorded and will be credited.
    GrabReply {
        code: u16,
        amount_cents: u32,
    },
    Error {
        code: u16,
        message: String,
    },
}

/// Why a payload could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("unsupported protocol version {0} (this gateway speaks {VERSION})")]
    Version(u8),
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("unknown outcome tag {0}")]
    UnknownOutcome(u8),
    #[error("payload ends early while reading {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the frame body")]
    Trailing(usize),
    #[error("string is not UTF-8")]
    Utf8,
}

impl DecodeError {
    /// The code the gateway answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Version(_) => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::Malformed,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            Err(DecodeError::Truncated(what))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }
    fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)? as usize;
        self.need(len, what)?;
        let out = Bytes::copy_from_slice(&self.buf[..len]);
        self.buf.advance(len);
        Ok(out)
    }
    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let raw = self.bytes(what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::Utf8)
    }
}

fn put_bytes(dst: &mut BytesMut, data: &[u8]) {
    // Frames are bounded far below u16::MAX per field by construction; clamp defensively.
    let len = data.len().min(u16::MAX as usize);
    dst.put_u16(len as u16);
    dst.put_slice(&data[..len]);
}

impl Frame {
    /// The frame's type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Frame::Hello { .. } => 0x01,
            Frame::HelloAck { .. } => 0x02,
            Frame::Heartbeat => 0x03,
            Frame::HeartbeatAck { .. } => 0x04,
            Frame::Shake { .. } => 0x05,
            Frame::ShakeReply { .. } => 0x06,
            Frame::Open { .. } => 0x07,
            Frame::OpenReply { .. } => 0x08,
            Frame::Share { .. } => 0x09,
            Frame::ShareReply { .. } => 0x0a,
            Frame::Grab { .. } => 0x0b,
            Frame::GrabReply { .. } => 0x0c,
            Frame::Error { .. } => 0x7f,
        }
    }

    /// Appends this frame's payload (version, type, body) to `dst`, without the length prefix.
    pub fn encode_payload(&self, dst: &mut BytesMut) {
        dst.put_u8(VERSION);
        dst.put_u8(self.type_byte());
        match self {
            Frame::Hello {
                user_id,
                auth_token,
            } => {
                dst.put_u64(*user_id);
                put_bytes(dst, auth_token);
            }
            Frame::HelloAck {
                server_time_ms,
                tier,
                shake_interval_ms,
                config_version,
                countdown_ms,
            } => {
                dst.put_u64(*server_time_ms);
                dst.put_u8(*tier);
                dst.put_u32(*shake_interval_ms);
                dst.put_u64(*config_version);
                dst.put_u32(*countdown_ms);
            }
            Frame::Heartbeat => {}
            Frame::HeartbeatAck { server_time_ms } => dst.put_u64(*server_time_ms),
            Frame::Shake { cookie } => put_bytes(dst, cookie),
            Frame::ShakeReply {
                outcome,
                tier,
                shake_interval_ms,
                cookie,
                config_version,
                countdown_ms,
            } => {
                match outcome {
                    Outcome::Nothing => dst.put_u8(0),
                    Outcome::ComeBackLater => dst.put_u8(3),
                    Outcome::Greeting { sponsor, resources } => {
                        dst.put_u8(1);
                        dst.put_u16(*sponsor);
                        let n = resources.len().min(MAX_RESOURCES);
                        dst.put_u8(n as u8);
                        for r in &resources[..n] {
                            dst.put_u32(*r);
                        }
                    }
                    Outcome::Envelope {
                        token,
                        sponsor,
                        amount_cents,
                    } => {
                        dst.put_u8(2);
                        put_bytes(dst, token);
                        dst.put_u16(*sponsor);
                        dst.put_u32(*amount_cents);
                    }
                }
                dst.put_u8(*tier);
                dst.put_u32(*shake_interval_ms);
                put_bytes(dst, cookie);
                dst.put_u64(*config_version);
                dst.put_u32(*countdown_ms);
            }
            Frame::Open { token } => put_bytes(dst, token),
            Frame::OpenReply { code, amount_cents } | Frame::GrabReply { code, amount_cents } => {
                dst.put_u16(*code);
                dst.put_u32(*amount_cents);
            }
            Frame::Share { token, friends } => {
                put_bytes(dst, token);
                let n = friends.len().min(u8::MAX as usize);
                dst.put_u8(n as u8);
                for f in &friends[..n] {
                    dst.put_u64(*f);
                }
            }
            Frame::ShareReply {
                code,
                share_id,
                parts,
                pot_cents,
                expires_in_ms,
            } => {
                dst.put_u16(*code);
                dst.put_u64(*share_id);
                dst.put_u8(*parts);
                dst.put_u32(*pot_cents);
                dst.put_u32(*expires_in_ms);
            }
            Frame::Grab { share_id } => dst.put_u64(*share_id),
            Frame::Error { code, message } => {
                dst.put_u16(*code);
                put_bytes(dst, message.as_bytes());
            }
        }
    }

    /// Decodes one payload (version, type, body). Never panics, whatever the bytes.
    pub fn decode_payload(payload: &[u8]) -> Result<Frame, DecodeError> {
        let mut r = Reader { buf: payload };
        let version = r.u8("version").map_err(|_| DecodeError::Empty)?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let ty = r.u8("type")?;
        let frame = match ty {
            0x01 => Frame::Hello {
                user_id: r.u64("user_id")?,
                auth_token: r.bytes("auth_token")?,
            },
            0x02 => Frame::HelloAck {
                server_time_ms: r.u64("server_time_ms")?,
                tier: r.u8("tier")?,
                shake_interval_ms: r.u32("shake_interval_ms")?,
                config_version: r.u64("config_version")?,
                countdown_ms: r.u32("countdown_ms")?,
            },
            0x03 => Frame::Heartbeat,
            0x04 => Frame::HeartbeatAck {
                server_time_ms: r.u64("server_time_ms")?,
            },
            0x05 => Frame::Shake {
                cookie: r.bytes("cookie")?,
            },
            0x06 => {
                let outcome = match r.u8("outcome")? {
                    0 => Outcome::Nothing,
                    3 => Outcome::ComeBackLater,
                    1 => {
                        let sponsor = r.u16("sponsor")?;
                        let n = r.u8("resource count")? as usize;
                        let mut resources = Vec::with_capacity(n);
                        for _ in 0..n {
                            resources.push(r.u32("resource id")?);
                        }
                        Outcome::Greeting { sponsor, resources }
                    }
                    2 => Outcome::Envelope {
                        token: r.bytes("token")?,
                        sponsor: r.u16("sponsor")?,
                        amount_cents: r.u32("amount_cents")?,
                    },
                    other => return Err(DecodeError::UnknownOutcome(other)),
                };
                Frame::ShakeReply {
                    outcome,
                    tier: r.u8("tier")?,
                    shake_interval_ms: r.u32("shake_interval_ms")?,
                    cookie: r.bytes("cookie")?,
                    config_version: r.u64("config_version")?,
                    countdown_ms: r.u32("countdown_ms")?,
                }
            }
            0x07 => Frame::Open {
                token: r.bytes("token")?,
            },
            0x08 => Frame::OpenReply {
                code: r.u16("code")?,
                amount_cents: r.u32("amount_cents")?,
            },
            0x09 => {
                let token = r.bytes("token")?;
                let n = r.u8("friend count")? as usize;
                let mut friends = Vec::with_capacity(n);
                for _ in 0..n {
                    friends.push(r.u64("friend id")?);
                }
                Frame::Share { token, friends }
            }
            0x0a => Frame::ShareReply {
                code: r.u16("code")?,
                share_id: r.u64("share_id")?,
                parts: r.u8("parts")?,
                pot_cents: r.u32("pot_cents")?,
                expires_in_ms: r.u32("expires_in_ms")?,
            },
            0x0b => Frame::Grab {
                share_id: r.u64("share_id")?,
            },
            0x0c => Frame::GrabReply {
                code: r.u16("code")?,
                amount_cents: r.u32("amount_cents")?,
            },
            0x7f => Frame::Error {
                code: r.u16("code")?,
                message: r.string("message")?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        };
        if r.buf.has_remaining() {
            return Err(DecodeError::Trailing(r.buf.remaining()));
        }
        Ok(frame)
    }

    /// Builds an `Error` frame for a code.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Frame {
        Frame::Error {
            code: code as u16,
            message: message.into(),
        }
    }
}

#[cfg(all(test, feature = "codec"))]
mod tests;
