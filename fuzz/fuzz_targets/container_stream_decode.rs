//! Arbitrary bytes as a stream of gRPC messages under `grpc-encoding: bloscar`, as a peer
//! could send them: records for the streamed-container decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "stream_run.rs"]
mod stream_run;

fuzz_target!(|data: &[u8]| {
    let records = stream_run::messages(data)
        .into_iter()
        .filter(|&(flag, _)| flag == 1)
        .map(|(_, record)| record.to_vec());
    stream_run::run(records);
});
