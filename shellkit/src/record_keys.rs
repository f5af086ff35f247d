//! TLS record-layer keys expanded on first use, for QUIC's cipher suites.
//!
//! At the end of every TLS 1.3 handshake, rustls derives a record-layer encrypter and
//! decrypter, QUIC handshakes included. QUIC protects its packets with keys of its own
//! (`quic` on the suite) and never sends a TLS record, so those two are never used. Yet
//! ring's expanded AES-GCM key is about 560 bytes each way. With hundreds of thousands of
//! connections, that is about 1 KB per connection on each side, for nothing.
//!
//! The suites here are ring's, with the same hash, the same QUIC keys and the same AEAD,
//! but their record-layer encrypter and decrypter keep only the key material (at most 32
//! bytes of key, 12 of IV) until their first record, and expand it then. A record sent or
//! received (none is, over QUIC) works exactly as with ring's own suite, which the tests
//! check record by record.

use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter,
    OutboundOpaqueMessage, OutboundPlainMessage, Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::crypto::CryptoProvider;
use rustls::{CipherSuiteCommon, ConnectionTrafficSecrets, SupportedCipherSuite, Tls13CipherSuite};
use std::sync::OnceLock;

/// The AEAD tag every TLS 1.3 suite of ring's carries (AES-GCM and ChaCha20-Poly1305).
const TAG_LEN: usize = 16;

/// ring's provider, with its TLS 1.3 suites' record-layer keys expanded on first use.
pub fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = suites().to_vec();
    provider
}

/// The wrapped suites, made once per process: rustls takes suites as `'static`.
fn suites() -> &'static [SupportedCipherSuite] {
    static SUITES: OnceLock<Vec<SupportedCipherSuite>> = OnceLock::new();
    SUITES.get_or_init(|| {
        rustls::crypto::ring::default_provider()
            .cipher_suites
            .into_iter()
            .map(|suite| match suite.tls13() {
                Some(s) => {
                    let aead: &'static OnFirstUse = Box::leak(Box::new(OnFirstUse(s.aead_alg)));
                    SupportedCipherSuite::Tls13(Box::leak(Box::new(Tls13CipherSuite {
                        common: CipherSuiteCommon {
                            suite: s.common.suite,
                            hash_provider: s.common.hash_provider,
                            confidentiality_limit: s.common.confidentiality_limit,
                        },
                        hkdf_provider: s.hkdf_provider,
                        aead_alg: aead,
                        quic: s.quic,
                    })))
                }
                None => suite,
            })
            .collect()
    })
}

/// An AEAD algorithm whose record-layer encrypters and decrypters expand their key on
/// first use; everything else is the wrapped algorithm's.
struct OnFirstUse(&'static dyn Tls13AeadAlgorithm);

impl Tls13AeadAlgorithm for OnFirstUse {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Encrypter {
            alg: self.0,
            keys: Keys::Material { key, iv },
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Decrypter {
            alg: self.0,
            keys: Keys::Material { key, iv },
        })
    }

    fn key_len(&self) -> usize {
        self.0.key_len()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        self.0.extract_keys(key, iv)
    }

    fn fips(&self) -> bool {
        self.0.fips()
    }
}

/// A direction's keys: the material as derived, or expanded by the wrapped algorithm.
enum Keys<T: ?Sized> {
    Material { key: AeadKey, iv: Iv },
    Expanded(Box<T>),
}

impl<T: ?Sized> Keys<T> {
    /// The expanded keys, expanding the material with `expand` the first time.
    fn expanded(&mut self, expand: impl FnOnce(AeadKey, Iv) -> Box<T>) -> &mut T {
        if let Keys::Material { .. } = self {
            let placeholder = Keys::Material {
                key: AeadKey::from([0; 32]),
                iv: Iv::default(),
            };
            if let Keys::Material { key, iv } = std::mem::replace(self, placeholder) {
                *self = Keys::Expanded(expand(key, iv));
            }
        }
        match self {
            Keys::Expanded(expanded) => expanded,
            Keys::Material { .. } => unreachable!("the material was expanded just above"),
        }
    }
}

struct Encrypter {
    alg: &'static dyn Tls13AeadAlgorithm,
    keys: Keys<dyn MessageEncrypter>,
}

impl MessageEncrypter for Encrypter {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, rustls::Error> {
        let alg = self.alg;
        self.keys
            .expanded(|key, iv| alg.encrypter(key, iv))
            .encrypt(msg, seq)
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        match &self.keys {
            Keys::Expanded(expanded) => expanded.encrypted_payload_len(payload_len),
            // A TLS 1.3 record: the payload, its content type, the tag.
            Keys::Material { .. } => payload_len + 1 + TAG_LEN,
        }
    }
}

struct Decrypter {
    alg: &'static dyn Tls13AeadAlgorithm,
    keys: Keys<dyn MessageDecrypter>,
}

impl MessageDecrypter for Decrypter {
    fn decrypt<'a>(
        &mut self,
        msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, rustls::Error> {
        let alg = self.alg;
        self.keys
            .expanded(|key, iv| alg.decrypter(key, iv))
            .decrypt(msg, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ContentType, ProtocolVersion};
    use std::sync::Arc;

    fn tls13(suite: &SupportedCipherSuite) -> &'static Tls13CipherSuite {
        suite.tls13().expect("a TLS 1.3 suite")
    }

    /// The pairs (ring's suite, the wrapped one), the TLS 1.3 ones only.
    fn pairs() -> Vec<(&'static Tls13CipherSuite, &'static Tls13CipherSuite)> {
        let ring = rustls::crypto::ring::default_provider().cipher_suites;
        let wrapped = provider().cipher_suites;
        assert_eq!(ring.len(), wrapped.len());
        ring.iter()
            .zip(&wrapped)
            .filter(|(r, _)| r.tls13().is_some())
            .map(|(r, w)| (tls13(r), tls13(w)))
            .collect()
    }

    /// A 32-byte key (AES-256-GCM's and ChaCha20-Poly1305's length; rustls makes shorter
    /// ones only from a key schedule, which the handshake test below goes through).
    fn key(seed: u8) -> AeadKey {
        AeadKey::from(std::array::from_fn(|i| seed.wrapping_mul(31) ^ i as u8))
    }

    fn seal(enc: &mut dyn MessageEncrypter, payload: &[u8], seq: u64) -> Vec<u8> {
        let msg = OutboundPlainMessage {
            typ: ContentType::ApplicationData,
            version: ProtocolVersion::TLSv1_2,
            payload: payload.into(),
        };
        enc.encrypt(msg, seq).expect("encrypts").encode()
    }

    fn open(dec: &mut dyn MessageDecrypter, record: &[u8], seq: u64) -> Option<Vec<u8>> {
        let mut body = record[5..].to_vec();
        let msg = InboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            &mut body,
        );
        dec.decrypt(msg, seq).ok().map(|m| m.payload.to_vec())
    }

    #[test]
    fn records_are_sealed_and_opened_as_with_rings_own_suites() {
        let pairs: Vec<_> = pairs()
            .into_iter()
            .filter(|(ring, _)| ring.aead_alg.key_len() == 32)
            .collect();
        assert_eq!(pairs.len(), 2, "AES-256-GCM and ChaCha20-Poly1305");
        for (ring, wrapped) in pairs {
            assert_eq!(ring.common.suite, wrapped.common.suite);
            let mut eager = ring.aead_alg.encrypter(key(1), Iv::from([7; 12]));
            let mut lazy = wrapped.aead_alg.encrypter(key(1), Iv::from([7; 12]));
            // Before its first record, the figure is computed, not asked of ring.
            for n in [0, 1, 300, 16_384] {
                assert_eq!(
                    lazy.encrypted_payload_len(n),
                    eager.encrypted_payload_len(n)
                );
            }
            let mut eager_dec = ring.aead_alg.decrypter(key(1), Iv::from([7; 12]));
            let mut lazy_dec = wrapped.aead_alg.decrypter(key(1), Iv::from([7; 12]));
            for seq in 0..3 {
                let payload = format!("record {seq}").into_bytes();
                let sealed = seal(lazy.as_mut(), &payload, seq);
                assert_eq!(sealed, seal(eager.as_mut(), &payload, seq));
                assert_eq!(
                    open(eager_dec.as_mut(), &sealed, seq),
                    Some(payload.clone())
                );
                assert_eq!(open(lazy_dec.as_mut(), &sealed, seq), Some(payload));
            }
            let mut other = wrapped.aead_alg.decrypter(key(2), Iv::from([7; 12]));
            let sealed = seal(eager.as_mut(), b"shake", 9);
            assert_eq!(
                open(other.as_mut(), &sealed, 9),
                None,
                "another key's record"
            );
        }
    }

    #[test]
    fn unexpanded_keys_are_a_fraction_of_rings_expanded_ones() {
        let lazy = std::mem::size_of::<Encrypter>().max(std::mem::size_of::<Decrypter>());
        assert!(lazy <= 96, "{lazy} bytes before the first record");
        for (ring, _) in pairs()
            .into_iter()
            .filter(|(r, _)| r.aead_alg.key_len() == 32)
        {
            let eager = ring.aead_alg.encrypter(key(1), Iv::from([7; 12]));
            let eager = std::mem::size_of_val(eager.as_ref());
            assert!(eager > 4 * lazy, "{eager} bytes expanded, {lazy} not");
        }
    }

    /// Moves what `from` has to send into `to`.
    fn pass(from: &mut rustls::Connection, to: &mut rustls::Connection) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).expect("writes to memory");
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).expect("reads from memory");
            to.process_new_packets().expect("a valid peer");
        }
    }

    fn read_all(conn: &mut rustls::Connection) -> Vec<u8> {
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn.reader(), &mut got);
        got
    }

    #[test]
    fn a_tls_session_on_each_wrapped_suite_carries_records_both_ways() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let server = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key)
                .unwrap(),
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        for (_, wrapped) in pairs() {
            let mut only = provider();
            only.cipher_suites
                .retain(|s| s.suite() == wrapped.common.suite);
            let client = rustls::ClientConfig::builder_with_provider(Arc::new(only))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            let name = "localhost".try_into().unwrap();
            let mut c: rustls::Connection = rustls::ClientConnection::new(Arc::new(client), name)
                .unwrap()
                .into();
            let mut s: rustls::Connection = rustls::ServerConnection::new(server.clone())
                .unwrap()
                .into();
            while c.is_handshaking() || s.is_handshaking() {
                pass(&mut c, &mut s);
                pass(&mut s, &mut c);
            }
            let suite = c.negotiated_cipher_suite().map(|s| s.suite());
            assert_eq!(suite, Some(wrapped.common.suite));
            std::io::Write::write_all(&mut c.writer(), b"shake").unwrap();
            pass(&mut c, &mut s);
            assert_eq!(read_all(&mut s), b"shake");
            std::io::Write::write_all(&mut s.writer(), b"envelope").unwrap();
            pass(&mut s, &mut c);
            assert_eq!(read_all(&mut c), b"envelope");
        }
    }
}
