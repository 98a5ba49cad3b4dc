//! The demo's tensors: realistic shapes and contents, generated deterministically.

/// One tensor the demo sends, in KServe v2 terms.
pub struct DemoTensor {
    /// What it stands for, shown in the table.
    pub label: &'static str,
    /// The input's name in the request (the sidecar's chooser sees it).
    pub name: &'static str,
    /// KServe datatype (`FP32`, `UINT8`, ...).
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    /// Row-major little-endian bytes.
    pub data: Vec<u8>,
}

/// SplitMix64: a tiny, fast, deterministic generator; statistical quality is plenty for
/// test data and no crate is needed for it.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Roughly normal noise (sum of uniforms), mean 0, standard deviation `sd`.
    fn noise(&mut self, sd: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum::<f32>() - 2.0;
        s * sd * 1.73
    }
}

/// A natural-looking 8-bit pixel value at (x, y) of channel `c`: smooth shapes and
/// gradients plus sensor noise.
fn pixel(rng: &mut Rng, seed: f32, c: usize, x: usize, y: usize, side: usize) -> u8 {
    let (fx, fy) = (x as f32 / side as f32, y as f32 / side as f32);
    let base = 0.5
        + 0.25 * ((6.0 * fx + seed + c as f32).sin() * (4.0 * fy - seed).cos())
        + 0.2 * (fx - fy);
    (base * 255.0 + rng.noise(2.0)).clamp(0.0, 255.0) as u8
}

/// Batch size scaled by `scale`, at least one.
fn batch(default: usize, scale: f64) -> usize {
    ((default as f64 * scale).round() as usize).max(1)
}

/// A batch of RGB images preprocessed for a CNN: NCHW float32, ImageNet-normalised
/// 8-bit pixels (so each channel holds at most 256 distinct values, as in real inputs).
pub fn image_batch(scale: f64) -> DemoTensor {
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    let (n, side) = (batch(4, scale), 224);
    let mut rng = Rng(1);
    let mut data = Vec::with_capacity(n * 3 * side * side * 4);
    for i in 0..n {
        for (c, (mean, std)) in MEAN.iter().zip(STD).enumerate() {
            for y in 0..side {
                for x in 0..side {
                    let p = pixel(&mut rng, i as f32, c, x, y, side);
                    let v = (p as f32 / 255.0 - mean) / std;
                    data.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    DemoTensor {
        label: "image batch FP32 (Nx3x224x224)",
        name: "image",
        datatype: "FP32",
        shape: vec![n as i64, 3, side as i64, side as i64],
        data,
    }
}

/// A batch of video frames as decoded: NHWC uint8.
pub fn frame_batch(scale: f64) -> DemoTensor {
    let (n, side) = (batch(8, scale), 224);
    let mut rng = Rng(2);
    let mut data = Vec::with_capacity(n * side * side * 3);
    for i in 0..n {
        for y in 0..side {
            for x in 0..side {
                for c in 0..3 {
                    data.push(pixel(&mut rng, i as f32 * 0.05, c, x, y, side));
                }
            }
        }
    }
    DemoTensor {
        label: "video frames UINT8 (Nx224x224x3)",
        name: "frames",
        datatype: "UINT8",
        shape: vec![n as i64, side as i64, side as i64, 3],
        data,
    }
}

/// Segmentation output: one class id per pixel, a few regions on a background.
pub fn segmentation_mask(scale: f64) -> DemoTensor {
    let (n, side) = (batch(4, scale), 512usize);
    let mut rng = Rng(3);
    let mut data = vec![0u8; n * side * side];
    for plane in data.chunks_mut(side * side) {
        for _ in 0..6 {
            let class = 1 + (rng.next_u64() % 20) as u8;
            let (cx, cy) = (rng.unit() * side as f32, rng.unit() * side as f32);
            let r = 20.0 + rng.unit() * 80.0;
            for (idx, px) in plane.iter_mut().enumerate() {
                let (x, y) = ((idx % side) as f32, (idx / side) as f32);
                if (x - cx).powi(2) + (y - cy).powi(2) < r * r {
                    *px = class;
                }
            }
        }
    }
    DemoTensor {
        label: "segmentation mask UINT8 (Nx512x512)",
        name: "mask",
        datatype: "UINT8",
        shape: vec![n as i64, side as i64, side as i64],
        data,
    }
}

/// Uniformly random float32 bit patterns: incompressible, the worst case.
pub fn random_noise(scale: f64) -> DemoTensor {
    let n = batch(4, scale);
    let len = 262_144;
    let mut rng = Rng(4);
    let mut data = Vec::with_capacity(n * len * 4);
    for _ in 0..n * len {
        // Random finite floats in [-1, 1) with random mantissas.
        let v = rng.unit() * 2.0 - 1.0;
        data.extend_from_slice(&v.to_le_bytes());
    }
    DemoTensor {
        label: "random noise FP32 (Nx262144)",
        name: "noise",
        datatype: "FP32",
        shape: vec![n as i64, len as i64],
        data,
    }
}

/// Every demo tensor, in table order.
pub fn all(scale: f64) -> Vec<DemoTensor> {
    vec![
        image_batch(scale),
        frame_batch(scale),
        segmentation_mask(scale),
        random_noise(scale),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_shapes() {
        for t in all(0.25) {
            let elems: i64 = t.shape.iter().product();
            let elem_size = if t.datatype == "FP32" { 4 } else { 1 };
            assert_eq!(t.data.len() as i64, elems * elem_size, "{}", t.label);
        }
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(image_batch(0.25).data, image_batch(0.25).data);
        assert_eq!(random_noise(0.25).data, random_noise(0.25).data);
        assert_ne!(
            random_noise(0.25).data[..4096],
            image_batch(0.25).data[..4096]
        );
    }
}
