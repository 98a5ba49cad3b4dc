//! Shared by the streamed-container targets: feeds a stream of gRPC messages to a
//! `StreamDecoder` and checks what it restores against what the headers announced.

use bloscar::container::Limits;
use bloscar::container::stream::{Record, StreamDecoder};
use bytes::Bytes;

/// The gRPC messages in `data`: 5-byte prefix (flag, u32 big-endian length), then the
/// payload; a length past the end takes what is left.
pub fn messages(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 5 {
        let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        let end = (5 + len).min(data.len());
        out.push((data[0], &data[5..end]));
        data = &data[end..];
    }
    out
}

/// Pushes every flag-1 record (identity messages pass by); after an error the stream
/// goes on, since the decoder is left as it was before the failing record.
pub fn run(records: impl IntoIterator<Item = Vec<u8>>) {
    let limits = Limits {
        max_message_size: 1 << 24,
        max_segment_len: 1 << 20,
        ..Limits::default()
    };
    let mut decoder = StreamDecoder::new(limits);
    // (announced, restored so far) of the open container.
    let mut open: Option<(u64, u64)> = None;
    for record in records {
        let owed_before = decoder.owed();
        let restored = match decoder.push(Bytes::from(record)) {
            Err(_) => {
                assert_eq!(decoder.owed(), owed_before);
                continue;
            }
            Ok(Record::Start { restored_len }) => {
                assert!(open.is_none() && owed_before == 0);
                assert!(restored_len <= limits.max_message_size as u64);
                open = Some((restored_len, 0));
                0
            }
            Ok(Record::Plain(bytes)) => bytes.len() as u64,
            Ok(Record::Blosc(job)) => {
                let len = job.restored_len();
                assert!(len <= limits.max_segment_len);
                if let Ok(bytes) = job.run() {
                    assert_eq!(bytes.len(), len);
                }
                len as u64
            }
            Ok(Record::Whole(job)) => {
                assert!(open.is_none() && owed_before == 0);
                let len = job.restored_len();
                assert!(len <= limits.max_message_size);
                if let Ok(bytes) = job.run() {
                    assert_eq!(bytes.len(), len);
                }
                continue;
            }
        };
        let (announced, done) = open.as_mut().expect("bytes restored inside a container");
        *done += restored;
        assert!(*done <= *announced);
        assert_eq!(decoder.owed(), *announced - *done);
        if !decoder.is_open() {
            assert_eq!(*done, *announced);
            open = None;
        }
    }
    assert_eq!(decoder.finish().is_ok(), open.is_none());
}
