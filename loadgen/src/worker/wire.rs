//! What a simulated phone's connection runs over: a TCP socket of its own, or a
//! connection of the worker's QUIC endpoint; and how a TCP connection is dialled.

use super::quic::Quic;
use mio::net::TcpStream;
use std::io::{Read, Write};
use std::net::SocketAddr;

/// What a client's connection runs over.
pub(super) enum Wire {
    Tcp(TcpStream),
    /// A connection of the worker's QUIC endpoint, by handle.
    Quic(usize),
}

impl Wire {
    pub(super) fn read(
        &mut self,
        quic: &mut Option<Quic>,
        buf: &mut [u8],
    ) -> std::io::Result<usize> {
        match (self, quic) {
            (Wire::Tcp(s), _) => s.read(buf),
            (Wire::Quic(h), Some(q)) => q.read(*h, buf),
            (Wire::Quic(_), None) => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    pub(super) fn write(&mut self, quic: &mut Option<Quic>, buf: &[u8]) -> std::io::Result<usize> {
        match (self, quic) {
            (Wire::Tcp(s), _) => s.write(buf),
            (Wire::Quic(h), Some(q)) => q.write(*h, buf),
            (Wire::Quic(_), None) => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

/// Source addresses spread over for loopback targets.
const LOOPBACK_SOURCES: u64 = 4096;

/// Opens a non-blocking connection to `gateway`.
///
/// To a loopback gateway, each user connects from one of 4,096 addresses in
/// 127.1.0.0/20 (all of 127.0.0.0/8 is loopback): the kernel picks a source port per
/// connect so that the address pair is unique, and with a million connections from one
/// address to a few dozen gateway ports it scans thousands of taken ports each time,
/// spending the machine's CPU in the kernel. With many source addresses the first port
/// it tries is free. `IP_BIND_ADDRESS_NO_PORT` leaves the port choice to connect time.
pub(super) fn dial(gateway: SocketAddr, user: u64) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(v4) = gateway else {
        return TcpStream::connect(gateway);
    };
    if !v4.ip().is_loopback() {
        return TcpStream::connect(gateway);
    }
    let i = user % LOOPBACK_SOURCES;
    let source = Ipv4Addr::new(127, 1, (i >> 8) as u8, (i & 0xff) as u8);
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(source, 0)),
    )?;
    match connect(fd.as_raw_fd(), &SockaddrIn::from(v4)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}

/// The error kind a failed connect is counted under.
pub(super) fn io_kind(e: &std::io::Error) -> &'static str {
    use nix::errno::Errno;
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EMFILE) | Some(Errno::ENFILE) => "out_of_files",
        Some(Errno::EADDRNOTAVAIL) => "out_of_ports",
        _ => "failed",
    }
}
