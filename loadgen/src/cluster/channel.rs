//! The channel between the coordinator and an agent: TCP; a version line in the clear;
//! a Noise handshake keyed by the shared token (`NNpsk0`: no certificates to hand out,
//! and neither side gets past it without the token); then postcard messages, encrypted
//! and length-framed, each at most [`MAX_MESSAGE`] bytes.
//!
//! The version line comes first so that a coordinator and an agent of different
//! versions say so, instead of failing the handshake the way a wrong token does.

use serde::de::DeserializeOwned;
use serde::Serialize;
use snow::StatelessTransportState;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The cluster protocol's version: both sides must speak the same.
pub const VERSION: u32 = 1;
const GREETING: &str = "shakebench-cluster";
/// Bound into the handshake, so that another protocol version cannot shake hands.
const PROLOGUE: &[u8] = b"shakebench-cluster 1";
const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// The largest message either side accepts (a profile, a key, a worker's report).
pub const MAX_MESSAGE: usize = 16 << 20;
/// How long the version line and the handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one message may take to leave: a peer that stops reading is a lost peer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Noise's own bound on one message, and the tag each carries.
const NOISE_MAX: usize = 65_535;
const TAG: usize = 16;
const LINE_MAX: usize = 200;

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("network: {0}")]
    Io(#[from] io::Error),
    #[error("the peer speaks `{0}`, not `{GREETING} {VERSION}`: run the same loadgen version on the coordinator and every agent")]
    Version(String),
    #[error("the coordinator refused this agent: {0}")]
    Refused(String),
    #[error("the handshake failed: the coordinator and the agent hold different tokens (or the peer is no loadgen)")]
    Token,
    #[error("a message of {0} bytes is over the {MAX_MESSAGE}-byte bound")]
    TooLarge(usize),
    #[error("a message failed its integrity check: it was altered on the way")]
    Integrity,
    #[error("a message does not decode ({0}): run the same loadgen version everywhere")]
    Decode(String),
    #[error("nothing from the peer within {0:?} ({1})")]
    Timeout(Duration, &'static str),
    #[error("the peer closed the connection")]
    Closed,
    #[error("the token is empty or shorter than 16 bytes: make one with `head -c 32 /dev/urandom | base64 > token`")]
    WeakToken,
}

/// The shared secret both sides prove they hold.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// A token from its text (surrounding whitespace ignored): at least 16 bytes.
    pub fn new(text: &str) -> Result<Token, ChannelError> {
        let text = text.trim();
        if text.len() < 16 {
            return Err(ChannelError::WeakToken);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        Ok(Token(key))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The sending half of a channel.
pub struct Sender {
    write: OwnedWriteHalf,
    noise: Arc<StatelessTransportState>,
    nonce: u64,
}

/// The receiving half of a channel.
pub struct Receiver {
    read: OwnedReadHalf,
    noise: Arc<StatelessTransportState>,
    nonce: u64,
    plain: Vec<u8>,
    /// Bytes read off the connection since the handshake.
    pub bytes: u64,
}

/// The agent's side: greet, shake hands, and return the two halves.
pub async fn connect(stream: TcpStream, token: &Token) -> Result<(Sender, Receiver), ChannelError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut stream = stream;
        stream
            .write_all(format!("{GREETING} {VERSION}\n").as_bytes())
            .await?;
        let reply = read_line(&mut stream).await?;
        if let Some(reason) = reply.strip_prefix("refused: ") {
            return Err(ChannelError::Refused(reason.to_string()));
        }
        if reply != "ok" {
            return Err(ChannelError::Version(reply));
        }
        let mut noise = builder(token)
            .build_initiator()
            .map_err(|_| ChannelError::Token)?;
        let mut buf = vec![0u8; NOISE_MAX];
        let n = noise
            .write_message(&[], &mut buf)
            .map_err(|_| ChannelError::Token)?;
        write_piece(&mut stream, &buf[..n]).await?;
        // A coordinator that cannot read our first message (another token) hangs up.
        let reply = read_piece(&mut stream).await.map_err(|e| match e {
            ChannelError::Closed => ChannelError::Token,
            e => e,
        })?;
        noise
            .read_message(&reply, &mut buf)
            .map_err(|_| ChannelError::Token)?;
        let noise = noise
            .into_stateless_transport_mode()
            .map_err(|_| ChannelError::Token)?;
        Ok(halves(stream, noise))
    })
    .await
    .map_err(|_| ChannelError::Timeout(HANDSHAKE_TIMEOUT, "the handshake"))?
}

/// The coordinator's side: check the version, shake hands, return the two halves.
pub async fn accept(stream: TcpStream, token: &Token) -> Result<(Sender, Receiver), ChannelError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut stream = stream;
        let hello = read_line(&mut stream).await?;
        if hello != format!("{GREETING} {VERSION}") {
            let _ = stream
                .write_all(format!("refused: the coordinator speaks {GREETING} {VERSION}, the agent `{hello}`; run the same loadgen version everywhere\n").as_bytes())
                .await;
            return Err(ChannelError::Version(hello));
        }
        stream.write_all(b"ok\n").await?;
        let mut noise = builder(token)
            .build_responder()
            .map_err(|_| ChannelError::Token)?;
        let mut buf = vec![0u8; NOISE_MAX];
        let first = read_piece(&mut stream).await?;
        noise
            .read_message(&first, &mut buf)
            .map_err(|_| ChannelError::Token)?;
        let n = noise
            .write_message(&[], &mut buf)
            .map_err(|_| ChannelError::Token)?;
        write_piece(&mut stream, &buf[..n]).await?;
        let noise = noise
            .into_stateless_transport_mode()
            .map_err(|_| ChannelError::Token)?;
        Ok(halves(stream, noise))
    })
    .await
    .map_err(|_| ChannelError::Timeout(HANDSHAKE_TIMEOUT, "the handshake"))?
}

fn builder(token: &Token) -> snow::Builder<'_> {
    let params = NOISE.parse().expect("the Noise pattern name is valid");
    snow::Builder::new(params)
        .prologue(PROLOGUE)
        .and_then(|b| b.psk(0, &token.0))
        .expect("a 32-byte key at position 0 fits NNpsk0")
}

fn halves(stream: TcpStream, noise: StatelessTransportState) -> (Sender, Receiver) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let noise = Arc::new(noise);
    (
        Sender {
            write,
            noise: noise.clone(),
            nonce: 0,
        },
        Receiver {
            read,
            noise,
            nonce: 0,
            plain: Vec::new(),
            bytes: 0,
        },
    )
}

/// One line of at most [`LINE_MAX`] bytes, without its newline.
async fn read_line(stream: &mut TcpStream) -> Result<String, ChannelError> {
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await.map_err(eof_is_closed)?;
        if byte == b'\n' {
            break;
        }
        if line.len() >= LINE_MAX {
            return Err(ChannelError::Version(
                String::from_utf8_lossy(&line).into_owned() + "…",
            ));
        }
        line.push(byte);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

async fn write_piece(w: &mut (impl AsyncWriteExt + Unpin), piece: &[u8]) -> io::Result<()> {
    w.write_all(&(piece.len() as u16).to_be_bytes()).await?;
    w.write_all(piece).await
}

async fn read_piece(r: &mut (impl AsyncReadExt + Unpin)) -> Result<Vec<u8>, ChannelError> {
    let len = r.read_u16().await.map_err(eof_is_closed)? as usize;
    let mut piece = vec![0u8; len];
    r.read_exact(&mut piece).await.map_err(eof_is_closed)?;
    Ok(piece)
}

fn eof_is_closed(e: io::Error) -> ChannelError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ChannelError::Closed
    } else {
        ChannelError::Io(e)
    }
}

impl Sender {
    /// Sends one message: its length and body, in encrypted pieces.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), ChannelError> {
        let body = postcard::to_stdvec(message).map_err(|e| ChannelError::Decode(e.to_string()))?;
        if body.len() > MAX_MESSAGE {
            return Err(ChannelError::TooLarge(body.len()));
        }
        let mut plain = Vec::with_capacity(body.len() + 4);
        plain.extend_from_slice(&(body.len() as u32).to_be_bytes());
        plain.extend_from_slice(&body);
        let mut framed = Vec::with_capacity(plain.len() + plain.len() / 1000 + 64);
        let mut cipher = vec![0u8; NOISE_MAX];
        for chunk in plain.chunks(NOISE_MAX - TAG) {
            let n = self
                .noise
                .write_message(self.nonce, chunk, &mut cipher)
                .map_err(|_| ChannelError::Integrity)?;
            self.nonce += 1;
            framed.extend_from_slice(&(n as u16).to_be_bytes());
            framed.extend_from_slice(&cipher[..n]);
        }
        tokio::time::timeout(WRITE_TIMEOUT, self.write.write_all(&framed))
            .await
            .map_err(|_| ChannelError::Timeout(WRITE_TIMEOUT, "the peer stopped reading"))??;
        Ok(())
    }

    /// Closes the sending direction (the peer reads the end of the stream).
    pub async fn close(&mut self) {
        let _ = self.write.shutdown().await;
    }
}

impl Receiver {
    /// The next message; [`ChannelError::Closed`] when the peer closed cleanly.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ChannelError> {
        loop {
            if self.plain.len() >= 4 {
                let len = u32::from_be_bytes(self.plain[..4].try_into().expect("4 bytes")) as usize;
                if len > MAX_MESSAGE {
                    return Err(ChannelError::TooLarge(len));
                }
                if self.plain.len() >= 4 + len {
                    let message = postcard::from_bytes(&self.plain[4..4 + len])
                        .map_err(|e| ChannelError::Decode(e.to_string()));
                    self.plain.drain(..4 + len);
                    return message;
                }
            }
            let piece = read_piece(&mut self.read).await?;
            self.bytes += 2 + piece.len() as u64;
            let at = self.plain.len();
            self.plain.resize(at + piece.len(), 0);
            let n = self
                .noise
                .read_message(self.nonce, &piece, &mut self.plain[at..])
                .map_err(|_| ChannelError::Integrity)?;
            self.nonce += 1;
            self.plain.truncate(at + n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair(
        coordinator: &str,
        agent: &str,
    ) -> (
        Result<(Sender, Receiver), ChannelError>,
        Result<(Sender, Receiver), ChannelError>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (c, a) = (Token::new(coordinator).unwrap(), Token::new(agent).unwrap());
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            accept(s, &c).await
        });
        let client = connect(TcpStream::connect(addr).await.unwrap(), &a).await;
        (server.await.unwrap(), client)
    }

    #[tokio::test]
    async fn messages_cross_in_both_directions_even_past_one_noise_message() {
        let (server, client) = pair("a token of some length", "a token of some length").await;
        let ((mut s_tx, mut s_rx), (mut c_tx, mut c_rx)) = (server.unwrap(), client.unwrap());
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        c_tx.send(&big).await.unwrap();
        c_tx.send(&"second".to_string()).await.unwrap();
        assert_eq!(s_rx.recv::<Vec<u8>>().await.unwrap(), big);
        assert_eq!(s_rx.recv::<String>().await.unwrap(), "second");
        s_tx.send(&7u64).await.unwrap();
        assert_eq!(c_rx.recv::<u64>().await.unwrap(), 7);
        s_tx.close().await;
        assert!(matches!(
            c_rx.recv::<u64>().await,
            Err(ChannelError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_different_token_fails_the_handshake_on_both_sides() {
        let (server, client) = pair("the coordinator's token", "the agent's own token").await;
        assert!(
            matches!(server, Err(ChannelError::Token)),
            "{:?}",
            server.err()
        );
        assert!(client.is_err());
    }

    #[tokio::test]
    async fn another_version_is_refused_by_name() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = Token::new("a token of some length").unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            accept(s, &token).await.map(|_| ())
        });
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"shakebench-cluster 0\n").await.unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("refused: the coordinator speaks shakebench-cluster 1"));
        assert!(
            matches!(server.await.unwrap(), Err(ChannelError::Version(v)) if v == "shakebench-cluster 0")
        );
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_it_is_read() {
        let (server, client) = pair("a token of some length", "a token of some length").await;
        let ((_s_tx, mut s_rx), (mut c_tx, _c_rx)) = (server.unwrap(), client.unwrap());
        // A forged length inside a validly encrypted piece.
        let mut cipher = vec![0u8; NOISE_MAX];
        let n = c_tx
            .noise
            .write_message(0, &(u32::MAX).to_be_bytes(), &mut cipher)
            .unwrap();
        write_piece(&mut c_tx.write, &cipher[..n]).await.unwrap();
        assert!(matches!(
            s_rx.recv::<u64>().await,
            Err(ChannelError::TooLarge(_))
        ));
    }

    #[test]
    fn the_prologue_names_this_version() {
        assert_eq!(PROLOGUE, format!("{GREETING} {VERSION}").as_bytes());
    }

    #[test]
    fn short_tokens_are_refused_with_the_fix() {
        assert!(matches!(
            Token::new("  short \n"),
            Err(ChannelError::WeakToken)
        ));
        assert!(ChannelError::WeakToken.to_string().contains("head -c 32"));
    }
}
