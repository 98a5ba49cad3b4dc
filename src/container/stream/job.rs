//! The CPU-heavy part of restoring a record, packaged to run on a blocking pool.

use bytes::Bytes;

use crate::codec;
use crate::container::ContainerError;
use crate::container::v1::Layout;

/// Restores the bytes of one verified record: decompressing a Blosc segment, or
/// reconstructing a whole version-1 container. Owns what it needs (`Send + 'static`).
#[derive(Debug)]
pub struct RestoreJob {
    work: Work,
}

#[derive(Debug)]
enum Work {
    /// One Blosc chunk whose header declares `len` bytes.
    Blosc { chunk: Bytes, len: usize },
    /// A version-1 container, with the layout its parse found.
    Whole { container: Bytes, layout: Layout },
}

impl RestoreJob {
    pub(super) fn blosc(chunk: Bytes, len: usize) -> Self {
        Self {
            work: Work::Blosc { chunk, len },
        }
    }

    pub(super) fn whole(container: Bytes, layout: Layout) -> Self {
        Self {
            work: Work::Whole { container, layout },
        }
    }

    /// Bytes [`RestoreJob::run`] returns on success.
    pub fn restored_len(&self) -> usize {
        match &self.work {
            Work::Blosc { len, .. } => *len,
            Work::Whole { layout, .. } => layout.message_len(),
        }
    }

    /// Decompresses: exactly [`RestoreJob::restored_len`] bytes, or data loss when
    /// c-blosc finds the compressed bytes corrupt.
    pub fn run(self) -> Result<Bytes, ContainerError> {
        match self.work {
            Work::Blosc { chunk, len } => {
                let mut out = Vec::with_capacity(len);
                codec::decompress_append(&chunk, len, &mut out)
                    .map_err(|source| ContainerError::SegmentData { source })?;
                Ok(out.into())
            }
            Work::Whole { container, layout } => Ok(layout.view(&container).reconstruct()?.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_static<T: Send + 'static>() {}

    #[test]
    fn jobs_move_to_other_threads() {
        assert_send_static::<RestoreJob>();
    }
}
