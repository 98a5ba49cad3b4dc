//! A message gathered whole (compressed by the app, or for a locator that needs all of
//! it), encoded on the blocking pool: decompressing the app's encoding and locating
//! tensors in a large message are CPU-bound too.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::intake::budget_status;
use super::pipeline::{Expansion, run_blocking};
use crate::budget::{Account, Charge, Hold};
use crate::grpc::encoding::{self, Encoding};
use crate::grpc::{Code, Status};
use crate::locate::Direction;
use crate::stream_encoder::{EncoderContext, Out, StreamEncoder};

/// A message gathered whole, to encode on the blocking pool: decompressing the app's
/// encoding and locating tensors in a large message are CPU-bound too.
pub(super) struct Whole {
    pub(super) codec: Arc<crate::MessageCodec>,
    pub(super) context: EncoderContext,
    pub(super) direction: Direction,
    pub(super) source: Encoding,
    pub(super) compressed: bool,
    pub(super) max_message_bytes: usize,
}

impl Whole {
    /// The message's output, and the charge that covers it until all of it is sent:
    /// `charge` (twice the message) for a plain message; for one the app compressed,
    /// twice its plain length, reserved before it is decompressed (with `hold` kept
    /// meanwhile).
    pub(super) async fn expand(
        self,
        data: Bytes,
        charge: Charge,
        hold: Hold,
        jobs: Arc<Semaphore>,
        mut account: Account,
    ) -> Expansion {
        if !self.compressed {
            let outs = run_blocking(&jobs, move || self.encode(data)).await??;
            return Ok((outs, charge));
        }
        // How large the message is once decompressed is only known by decompressing it:
        // count first, keeping nothing, so that the budget is reserved before the bytes
        // exist (the CPU is spent twice, on a path apps can avoid by not compressing).
        let (source, limit, counted) = (self.source, self.max_message_bytes, data.clone());
        let plain_len = run_blocking(&jobs, move || {
            encoding::decompressed_len(source, &counted, limit)
        })
        .await??;
        account
            .reserve(2 * plain_len)
            .await
            .map_err(budget_status)?;
        let plain = account.take(2 * plain_len);
        drop(hold);
        let outs = run_blocking(&jobs, move || self.encode(data)).await??;
        // The compressed message went with the job.
        drop(charge);
        Ok((outs, plain))
    }

    fn encode(self, data: Bytes) -> Result<Vec<Out>, Status> {
        let plain = if self.compressed {
            match self.source {
                Encoding::Gzip | Encoding::Deflate | Encoding::Zstd => Bytes::from(
                    encoding::decompress(self.source, &data, self.max_message_bytes)?,
                ),
                Encoding::Identity | Encoding::Bloscar => {
                    return Err(Status::new(
                        Code::Internal,
                        "compressed message without a grpc-encoding",
                    ));
                }
            }
        } else {
            data
        };
        let ranges = self
            .codec
            .locator()
            .locate(&self.context.method, self.direction, &plain);
        let mut encoder = StreamEncoder::whole(self.context, plain.len(), &ranges);
        drop(ranges);
        let mut out = Vec::new();
        encoder.feed(plain.clone(), &mut out);
        Ok(out)
    }
}
