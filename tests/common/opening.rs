//! Opening connections by hand: what a listener does with a new connection before any
//! request, seen from the client's side of the socket.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 client preface and an empty SETTINGS frame: how every HTTP/2 client opens.
pub const H2_OPENING: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// What a listener did with a new connection.
#[derive(Debug)]
pub enum Reception {
    /// The server answered with its SETTINGS frame; the connection is kept open.
    Served(TcpStream),
    /// The listener closed the connection without a frame.
    Closed,
}

impl Reception {
    pub fn is_served(&self) -> bool {
        matches!(self, Reception::Served(_))
    }
}

/// Connects to `addr`, opens HTTP/2 and reads the listener's first frame (acknowledging
/// it, as a client must).
pub async fn open_h2(addr: SocketAddr) -> Reception {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    if stream.write_all(H2_OPENING).await.is_err() {
        return Reception::Closed;
    }
    match next_frame(&mut stream).await {
        Some(frame) => {
            assert_eq!(frame.kind, SETTINGS, "the server's first frame is SETTINGS");
            Reception::Served(stream)
        }
        None => Reception::Closed,
    }
}

/// Reads until the server closes `stream`, discarding what it sends; the error if it
/// fails otherwise.
pub async fn until_closed(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if closed(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Whether `e` is the peer closing or resetting the connection.
fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// One HTTP/2 frame: type, flags, payload.
#[derive(Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub flags: u8,
    pub payload: Vec<u8>,
}

pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

/// The next frame the server sends on `stream`, or `None` once it has closed it. Pings
/// and SETTINGS are acknowledged on the way, as a client must, so that the server's
/// graceful shutdown (which waits for a ping's acknowledgement) can finish.
pub async fn next_frame(stream: &mut TcpStream) -> Option<RawFrame> {
    let mut header = [0u8; 9];
    if let Err(e) = stream.read_exact(&mut header).await {
        assert!(closed(&e), "{e}");
        return None;
    }
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; len];
    if let Err(e) = stream.read_exact(&mut payload).await {
        assert!(closed(&e), "{e}");
        return None;
    }
    let frame = RawFrame {
        kind: header[3],
        flags: header[4],
        payload,
    };
    let ack = match frame.kind {
        PING if frame.flags & ACK == 0 => {
            let mut ack = vec![0, 0, 8, PING, ACK, 0, 0, 0, 0];
            ack.extend_from_slice(&frame.payload);
            Some(ack)
        }
        SETTINGS if frame.flags & ACK == 0 => Some(vec![0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]),
        _ => None,
    };
    if let Some(ack) = ack {
        // The server may already have closed its side; what it sent is still read.
        let _ = stream.write_all(&ack).await;
    }
    Some(frame)
}

/// Sends a PING on an opened connection and reads until its acknowledgement: true when
/// it came, false when the server closed the connection instead.
pub async fn ping(stream: &mut TcpStream) -> bool {
    let payload = *b"bloscar!";
    let mut frame = vec![0, 0, 8, PING, 0, 0, 0, 0, 0];
    frame.extend_from_slice(&payload);
    if stream.write_all(&frame).await.is_err() {
        return false;
    }
    while let Some(frame) = next_frame(stream).await {
        if frame.kind == PING && frame.flags & ACK != 0 && frame.payload == payload {
            return true;
        }
    }
    false
}

/// The error code of a GOAWAY frame's payload.
pub fn goaway_code(frame: &RawFrame) -> u32 {
    assert_eq!(frame.kind, GOAWAY);
    u32::from_be_bytes(frame.payload[4..8].try_into().unwrap())
}
