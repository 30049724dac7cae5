//! Frames between the daemon and a run child: a 4-byte big-endian length, then one protobuf
//! message (see `proto/hubworker/sandbox/v1/sandbox.proto`). The length is checked against a
//! cap before anything is allocated. The child's side is blocking (it is one thread talking to
//! one peer); the daemon's side is async.

use std::io::{Read, Write};

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The pipe failed.
    #[error("pipe: {0}")]
    Io(#[from] std::io::Error),
    /// A frame announced more bytes than allowed.
    #[error("a frame of {0} bytes is over the cap")]
    TooLarge(usize),
    /// The bytes are not the expected message.
    #[error("undecodable frame: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Encodes `msg` as one frame into a buffer that is wiped when dropped (frames can carry the
/// transport key).
pub(crate) fn encode<M: Message>(msg: &M) -> Zeroizing<Vec<u8>> {
    let len = msg.encoded_len();
    let mut buf = Zeroizing::new(Vec::with_capacity(4 + len));
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    // Encoding into a Vec with enough capacity cannot fail.
    let _ = msg.encode(&mut *buf);
    buf
}

/// A stream that ended inside a frame's length: not a clean end.
fn cut_short() -> WireError {
    WireError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the stream ended inside a frame's length",
    ))
}

/// Writes one frame (blocking).
pub(crate) fn write<M: Message, W: Write>(w: &mut W, msg: &M) -> Result<(), WireError> {
    w.write_all(&encode(msg))?;
    w.flush()?;
    Ok(())
}

/// Reads one frame (blocking); `None` at a clean end of stream (before a frame's first byte;
/// an end anywhere inside a frame is an error).
pub(crate) fn read<M: Message + Default, R: Read>(
    r: &mut R,
    cap: usize,
) -> Result<Option<M>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(cut_short()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > cap {
        return Err(WireError::TooLarge(len));
    }
    let mut buf = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut buf)?;
    Ok(Some(M::decode(buf.as_slice())?))
}

/// Writes one frame (async).
pub(crate) async fn write_async<M: Message, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &M,
) -> Result<(), WireError> {
    w.write_all(&encode(msg)).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame (async); `None` at a clean end of stream (as `read`). Also returns the
/// frame's size.
pub(crate) async fn read_async<M: Message + Default, R: AsyncRead + Unpin>(
    r: &mut R,
    cap: usize,
) -> Result<Option<(M, usize)>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]).await {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(cut_short()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > cap {
        return Err(WireError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some((M::decode(buf.as_slice())?, len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sandbox::{FromChild, Ready, from_child};

    fn ready() -> FromChild {
        FromChild {
            msg: Some(from_child::Msg::Ready(Ready {
                confinements: vec![crate::proto::sandbox::Confinement {
                    name: "seccomp".into(),
                    active: true,
                    detail: String::new(),
                }],
                landlock_abi: 6,
                inputs: Vec::new(),
            })),
        }
    }

    #[test]
    fn a_frame_round_trips_and_the_stream_ends_cleanly() {
        let mut buf = Vec::new();
        write(&mut buf, &ready()).expect("write");
        write(&mut buf, &ready()).expect("write");
        let mut r = buf.as_slice();
        assert_eq!(
            read::<FromChild, _>(&mut r, 1024).expect("read"),
            Some(ready())
        );
        assert_eq!(
            read::<FromChild, _>(&mut r, 1024).expect("read"),
            Some(ready())
        );
        assert_eq!(read::<FromChild, _>(&mut r, 1024).expect("read"), None);
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        assert!(matches!(
            read::<FromChild, _>(&mut r, 1 << 20),
            Err(WireError::TooLarge(0xffff_ffff))
        ));
    }

    #[test]
    fn a_truncated_frame_is_an_error_not_a_hang_or_panic() {
        let mut buf = Vec::new();
        write(&mut buf, &ready()).expect("write");
        buf.truncate(buf.len() - 1);
        let mut r = buf.as_slice();
        assert!(read::<FromChild, _>(&mut r, 1024).is_err());
    }

    #[tokio::test]
    async fn async_and_blocking_sides_agree() {
        let mut buf = Vec::new();
        write_async(&mut buf, &ready()).await.expect("write");
        let mut r = buf.as_slice();
        let (m, n) = read_async::<FromChild, _>(&mut r, 1024)
            .await
            .expect("read")
            .expect("a frame");
        assert_eq!(m, ready());
        assert_eq!(n + 4, buf.len());
    }
}
