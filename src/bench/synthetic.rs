//! Built-in tensors that look like inference traffic: the set `bloscar bench` measures
//! when it is given no files. Deterministic (a fixed-seed generator), so runs compare.

use crate::DType;

/// A named tensor held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Where it came from: a file name or the synthetic tensor's name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Bytes per element (the Blosc typesize).
    pub elem_size: usize,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Little-endian elements in C order.
    pub data: Vec<u8>,
}

/// The four tensor kinds of the demo: an image-like FP32 batch with sensor noise, a
/// UINT8 video-frame batch, a segmentation mask, and FP32 random noise.
pub fn demo_tensors() -> Vec<Tensor> {
    vec![
        image_batch_f32(),
        frame_batch_u8(),
        segmentation_mask(),
        noise_f32(),
    ]
}

/// A normalised NCHW batch (4 x 3 x 224 x 224) of smooth gradients and blobs with
/// Gaussian-like noise of sigma 0.01, as a vision model receives after preprocessing.
pub fn image_batch_f32() -> Tensor {
    let (n, c, h, w) = (4, 3, 224, 224);
    let mut rng = SplitMix(0x5eed_0001);
    let mut data = Vec::with_capacity(n * c * h * w * 4);
    for img in 0..n {
        for ch in 0..c {
            let phase = (img * 3 + ch) as f32 * 0.7;
            for y in 0..h {
                for x in 0..w {
                    let v = scene(x as f32 / w as f32, y as f32 / h as f32, phase);
                    let px = (v + 0.01 * rng.gaussian()).clamp(0.0, 1.0);
                    data.extend_from_slice(&px.to_le_bytes());
                }
            }
        }
    }
    Tensor {
        name: "image_fp32".into(),
        dtype: DType::F32,
        elem_size: 4,
        shape: vec![n, c, h, w],
        data,
    }
}

/// Eight consecutive NHWC video frames (8 x 224 x 224 x 3, UINT8): a scene panning a
/// little per frame, with +-2 levels of sensor noise.
pub fn frame_batch_u8() -> Tensor {
    let (n, h, w, c) = (8, 224, 224, 3);
    let mut rng = SplitMix(0x5eed_0002);
    let mut data = Vec::with_capacity(n * h * w * c);
    for frame in 0..n {
        let shift = frame as f32 * 0.01;
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let v = scene(x as f32 / w as f32 + shift, y as f32 / h as f32, ch as f32);
                    let noise = (rng.next() % 5) as f32 - 2.0;
                    data.push((v * 255.0 + noise).clamp(0.0, 255.0) as u8);
                }
            }
        }
    }
    Tensor {
        name: "frames_u8".into(),
        dtype: DType::U8,
        elem_size: 1,
        shape: vec![n, h, w, c],
        data,
    }
}

/// A segmentation model's output (4 x 512 x 512, UINT8 class ids 0-5): background with
/// a few discs and rectangles per image.
pub fn segmentation_mask() -> Tensor {
    let (n, h, w) = (4, 512, 512);
    let mut rng = SplitMix(0x5eed_0003);
    let mut data = vec![0u8; n * h * w];
    for img in data.chunks_exact_mut(h * w) {
        for _ in 0..6 {
            let class = (rng.next() % 5 + 1) as u8;
            let (cx, cy) = (
                (rng.next() % w as u64) as i64,
                (rng.next() % h as u64) as i64,
            );
            let r = (rng.next() % 80 + 20) as i64;
            let disc = rng.next().is_multiple_of(2);
            for y in (cy - r).max(0)..(cy + r).min(h as i64) {
                for x in (cx - r).max(0)..(cx + r).min(w as i64) {
                    let (dx, dy) = (x - cx, y - cy);
                    if !disc || dx * dx + dy * dy <= r * r {
                        img[y as usize * w + x as usize] = class;
                    }
                }
            }
        }
    }
    Tensor {
        name: "mask_u8".into(),
        dtype: DType::U8,
        elem_size: 1,
        shape: vec![n, h, w],
        data,
    }
}

/// One million standard-normal FP32 values: embeddings or latents with no structure.
pub fn noise_f32() -> Tensor {
    let len = 1024 * 1024;
    let mut rng = SplitMix(0x5eed_0004);
    let mut data = Vec::with_capacity(len * 4);
    for _ in 0..len {
        data.extend_from_slice(&rng.gaussian().to_le_bytes());
    }
    Tensor {
        name: "noise_fp32".into(),
        dtype: DType::F32,
        elem_size: 4,
        shape: vec![1024, 1024],
        data,
    }
}

/// `len` uniformly random bytes: data no codec can shrink.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        data.extend_from_slice(&rng.next().to_le_bytes());
    }
    data.truncate(len);
    data
}

/// A smooth scene in [0, 1]: two gradients and a soft blob, varied by `phase`.
fn scene(x: f32, y: f32, phase: f32) -> f32 {
    let blob = (-((x - 0.6).powi(2) + (y - 0.4).powi(2)) * 12.0).exp();
    let waves = 0.5 + 0.25 * (6.0 * x + phase).sin() * (4.0 * y - phase).cos();
    (0.45 * waves + 0.35 * blob + 0.2 * y).clamp(0.0, 1.0)
}

/// splitmix64: a tiny, good-enough generator for test data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (Irwin-Hall sum of four uniforms).
    fn gaussian(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * 3f32.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_hold_their_shapes() {
        for t in demo_tensors() {
            let elems: usize = t.shape.iter().product();
            assert_eq!(t.data.len(), elems * t.elem_size, "{}", t.name);
        }
        assert_eq!(random_bytes(13, 1).len(), 13);
        assert_eq!(image_batch_f32(), image_batch_f32());
    }
}
