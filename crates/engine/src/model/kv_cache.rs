//! A per-layer key/value cache that grows in place and can be cut back, so a
//! conversation can keep the prefix it shares with the next prompt.

use candle_core::{Result, Tensor};

/// Keys and values of one layer, `[1, n_head_kv, capacity, head_dim]`, of which
/// the first `len` positions are valid.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor, Tensor)>,
    len: usize,
}

impl LayerCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends `k`, `v` (`[1, n_head_kv, seq, head_dim]`) and returns views of
    /// all cached keys and values, `[1, n_head_kv, len, head_dim]`.
    ///
    /// # Errors
    /// Candle errors (shape mismatch between calls).
    pub fn append(&mut self, k: &Tensor, v: &Tensor, max_len: usize) -> Result<(Tensor, Tensor)> {
        let seq = k.dim(2)?;
        let needed = self.len + seq;
        let capacity = self.kv.as_ref().map_or(0, |(k, _)| k.dim(2).unwrap_or(0));
        if needed > capacity {
            let new_cap = needed.max(capacity * 2).max(64).min(max_len.max(needed));
            let (b, h, _, d) = k.dims4()?;
            let grow = |old: Option<&Tensor>| -> Result<Tensor> {
                let fresh = Tensor::zeros((b, h, new_cap, d), k.dtype(), k.device())?;
                if let Some(old) = old {
                    if self.len > 0 {
                        fresh.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    }
                }
                Ok(fresh)
            };
            let new_k = grow(self.kv.as_ref().map(|(k, _)| k))?;
            let new_v = grow(self.kv.as_ref().map(|(_, v)| v))?;
            self.kv = Some((new_k, new_v));
        }
        let Some((ck, cv)) = self.kv.as_ref() else {
            candle_core::bail!("kv cache was not allocated")
        };
        ck.slice_set(&k.contiguous()?, 2, self.len)?;
        cv.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok((ck.narrow(2, 0, self.len)?, cv.narrow(2, 0, self.len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn grows_keeps_and_truncates() {
        let dev = Device::Cpu;
        let mut c = LayerCache::default();
        let step = |i: f32| Tensor::full(i, (1, 2, 1, 4), &dev).unwrap();
        for i in 0..100 {
            c.append(&step(i as f32), &step(-(i as f32)), 4096).unwrap();
        }
        assert_eq!(c.len(), 100);
        c.truncate(10);
        let (k, v) = c.append(&step(7.0), &step(-7.0), 4096).unwrap();
        assert_eq!(k.dims(), &[1, 2, 11, 4]);
        let ks: Vec<f32> = k.narrow(1, 0, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(ks[9 * 4], 9.0);
        assert_eq!(ks[10 * 4], 7.0);
        let vs: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(vs[10 * 4], -7.0);
    }
}
