//! A container or a streamed record that lies about its sizes is rejected before anything
//! of the claimed size is allocated. A counting global allocator records the largest single allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bloscar::ErrorKind;
use bloscar::container::stream::{self, Record, StreamDecoder};
use bloscar::container::{self, ContainerError, Limits, PatchSpec};
use bytes::Bytes;

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Tests in this binary run one at a time so that the counter sees only one of them.
static SERIAL: Mutex<()> = Mutex::new(());

/// The largest single allocation while `f` runs.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.store(0, Ordering::SeqCst);
    let out = f();
    (out, LARGEST.load(Ordering::SeqCst))
}

const TB: u64 = 1 << 40;

/// A container whose single patch claims `claimed` bytes (and the message as much).
fn lying_container(claimed: u64) -> Vec<u8> {
    let msg: Vec<u8> = (0..4096u32).flat_map(|i| (i % 50).to_le_bytes()).collect();
    let spec = PatchSpec {
        offset: 0,
        len: msg.len(),
        elem_size: 4,
        options: Default::default(),
    };
    let mut bytes = container::encode(&msg, &[spec]).unwrap().bytes;
    bytes[12..20].copy_from_slice(&claimed.to_le_bytes()); // message_len
    bytes[36..44].copy_from_slice(&claimed.to_le_bytes()); // patch 0 len
    let body = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn claimed_terabyte_is_refused_by_the_limits_without_allocating() {
    let _serial = SERIAL.lock().unwrap();
    let bytes = lying_container(TB);
    let (result, largest) = largest_allocation(|| container::decode(&bytes, &Limits::default()));
    assert!(matches!(
        result,
        Err(ContainerError::MessageTooLarge { declared: TB, .. })
    ));
    assert!(largest < 4096, "allocated {largest} bytes");
}

#[test]
fn claimed_terabyte_is_refused_by_the_chunk_headers_even_without_limits() {
    let _serial = SERIAL.lock().unwrap();
    let bytes = lying_container(TB);
    let unlimited = Limits {
        max_message_size: usize::MAX,
        max_patches: usize::MAX,
        ..Limits::default()
    };
    let (result, largest) = largest_allocation(|| container::decode(&bytes, &unlimited));
    assert!(
        matches!(result, Err(ContainerError::PatchData { index: 0, .. })),
        "{result:?}"
    );
    assert!(largest < 4096, "allocated {largest} bytes");
}

#[test]
fn honest_container_allocates_the_message_once() {
    let _serial = SERIAL.lock().unwrap();
    let msg: Vec<u8> = (0..1_000_000u32).map(|i| (i / 1000) as u8).collect();
    let spec = PatchSpec {
        offset: 10,
        len: msg.len() - 20,
        elem_size: 1,
        options: Default::default(),
    };
    let bytes = container::encode(&msg, &[spec]).unwrap().bytes;
    let (result, largest) = largest_allocation(|| container::decode(&bytes, &Limits::default()));
    assert_eq!(result.unwrap(), msg);
    assert_eq!(largest, msg.len());
}

/// A streamed segment record of `payload` claiming to restore `claimed` bytes.
fn lying_segment(kind: u8, claimed: u32, payload: &[u8]) -> Bytes {
    let mut record = vec![kind, 0, 0, 0];
    record.extend_from_slice(&claimed.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record);
    crc.update(payload);
    record.extend_from_slice(&crc.finalize().to_le_bytes());
    record.extend_from_slice(payload);
    Bytes::from(record)
}

/// A decoder inside a container announced to restore 3 GiB.
fn open_decoder(limits: Limits) -> StreamDecoder {
    let mut decoder = StreamDecoder::new(limits);
    let header = stream::header_record(3 << 30);
    decoder.push(Bytes::copy_from_slice(&header)).unwrap();
    decoder
}

#[test]
fn tiny_segment_claiming_gigabytes_is_refused_without_allocating() {
    let _serial = SERIAL.lock().unwrap();
    let chunk = stream::blosc_segment(&[7; 64], 1, Default::default()).unwrap();
    let chunk = &chunk[stream::SEGMENT_HEAD_LEN..];
    for kind in [1, 2] {
        let record = lying_segment(kind, 2 << 30, chunk);
        let mut decoder = open_decoder(Limits::default());
        let (result, largest) = largest_allocation(|| decoder.push(record));
        let err = result.unwrap_err();
        assert_eq!(
            err,
            ContainerError::SegmentTooLarge {
                declared: 2 << 30,
                limit: Limits::DEFAULT_MAX_SEGMENT
            }
        );
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        assert!(largest < 4096, "allocated {largest} bytes");
    }
}

#[test]
fn tiny_segment_claiming_gigabytes_is_refused_by_its_chunk_header_without_limits() {
    let _serial = SERIAL.lock().unwrap();
    let chunk = stream::blosc_segment(&[7; 64], 1, Default::default()).unwrap();
    let record = lying_segment(2, 2 << 30, &chunk[stream::SEGMENT_HEAD_LEN..]);
    let unlimited = Limits {
        max_segment_len: usize::MAX,
        ..Limits::default()
    };
    let mut decoder = open_decoder(unlimited);
    let (result, largest) = largest_allocation(|| decoder.push(record));
    let err = result.unwrap_err();
    assert!(matches!(err, ContainerError::SegmentData { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::DataLoss);
    assert!(largest < 4096, "allocated {largest} bytes");
}

#[test]
fn honest_blosc_segment_allocates_its_bytes_once() {
    let _serial = SERIAL.lock().unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i / 1000) as u8).collect();
    let record = Bytes::from(stream::blosc_segment(&data, 1, Default::default()).unwrap());
    let mut decoder = StreamDecoder::new(Limits::default());
    decoder
        .push(Bytes::copy_from_slice(&stream::header_record(
            data.len() as u64
        )))
        .unwrap();
    let (restored, largest) = largest_allocation(|| match decoder.push(record).unwrap() {
        Record::Blosc(job) => job.run().unwrap(),
        other => panic!("{other:?}"),
    });
    assert_eq!(restored, data);
    assert_eq!(largest, data.len());
}
