//! The zero-preserving encoder for the K-quants with a per-sub-block minimum
//! (Q2_K, Q4_K, Q5_K).
//!
//! These formats dequantize sub-block `j` of a 256-value super-block as
//! `y = (d·sc_j)·q − dmin·m_j` with f16 `d`, `dmin`, small integer scales
//! `sc_j`, minimums `m_j` and codes `q` in `0..=nmax`. A weight of 0 comes back
//! as exactly 0 iff `d·sc_j·q0 == dmin·m_j` for some code `q0`. The encoder
//! makes that hold by choosing, per super-block, a ratio `r` with
//! `dmin = r·d` exactly in f16 and, per sub-block, `m_j = sc_j·q0_j / r`
//! (an integer in range). Every product involved has at most 22 significant
//! bits, so f32 evaluates both sides exactly and the sub-block's grid is
//! `d·sc_j·(q − q0_j)`: 0 is on it, and zeros (which round to offset 0) decode
//! to exactly 0.
//!
//! The search minimises the squared error of the other weights (zeros cost
//! nothing: they land on the grid). Per sub-block it fits a continuous scale
//! for the one or two most balanced `q0` (trial scales refined by least
//! squares); per super-block it ranks the ratios `r` the sub-blocks want,
//! then tries a few `d` per ratio and, per sub-block, the representable
//! `sc` just below and above the fitted scale, keeping the exact best.
//! Everything lives on the stack; the work per value is bounded.

use half::f16;

/// Values in a super-block.
pub(crate) const QK_K: usize = 256;
/// Most sub-blocks in a super-block (Q2_K's 16 of 16 values).
const MAX_SUB: usize = 16;
/// Most `q0` candidates fitted per sub-block.
const MAX_CAND: usize = 8;
/// Most `(ratio, d)` pairs evaluated exactly.
const MAX_FINALISTS: usize = 64;

/// The parameters of one K-quant format and of its search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    /// Values per sub-block.
    pub sub: usize,
    /// Highest code `q`.
    pub nmax: u8,
    /// Highest sub-block scale and minimum code.
    pub smax: u8,
    /// Trial scales, as fractions of the scale that clips nothing.
    trials: &'static [f32],
    /// Least-squares refits of each trial scale (codes, then scale).
    refits: usize,
    /// `q0` fitted per sub-block: this many around the balanced one (at most `MAX_CAND`).
    q0_window: u8,
    /// Ratios `dmin / d` tried per super-block.
    ratios: &'static [u8],
    /// Super-block scales `d` tried per ratio.
    d_tries: usize,
    /// Lattice scale codes tried on each side of a fitted scale.
    sc_reach: u32,
    /// Best modelled `(ratio, d)` pairs evaluated exactly (at most `MAX_FINALISTS`).
    finalists: usize,
}

impl Format {
    /// Sub-blocks per super-block.
    pub fn nsub(&self) -> usize {
        QK_K / self.sub
    }
}

/// Q2_K: 16 sub-blocks of 16, codes 0..=3, 4-bit scales and minimums.
pub(crate) const Q2K: Format = Format {
    sub: 16,
    nmax: 3,
    smax: 15,
    trials: &[1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.42, 0.35],
    refits: 2,
    q0_window: 4,
    ratios: &[1, 2, 3],
    d_tries: 4,
    sc_reach: 1,
    finalists: 1,
};

/// Q4_K: 8 sub-blocks of 32, codes 0..=15, 6-bit scales and minimums.
pub(crate) const Q4K: Format = Format {
    sub: 32,
    nmax: 15,
    smax: 63,
    trials: &[1.0, 0.93, 0.86, 0.78],
    refits: 2,
    q0_window: 6,
    ratios: &[4, 6, 8, 12],
    d_tries: 3,
    sc_reach: 1,
    finalists: 1,
};

/// Q5_K: 8 sub-blocks of 32, codes 0..=31, 6-bit scales and minimums.
pub(crate) const Q5K: Format = Format {
    sub: 32,
    nmax: 31,
    smax: 63,
    trials: &[1.0, 0.93, 0.86, 0.78],
    refits: 2,
    q0_window: 6,
    ratios: &[8, 12, 16, 24],
    d_tries: 3,
    sc_reach: 1,
    finalists: 1,
};

/// The encoding chosen for one super-block, before packing.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Super-block scale.
    pub d: f16,
    /// Super-block scale of the minimums.
    pub dmin: f16,
    /// Sub-block scales.
    pub sc: [u8; MAX_SUB],
    /// Sub-block minimums.
    pub m: [u8; MAX_SUB],
    /// Codes, one per value.
    pub q: [u8; QK_K],
}

impl Plan {
    /// A plan that decodes to all zeros.
    pub fn zero() -> Self {
        Self { d: f16::ZERO, dmin: f16::ZERO, sc: [0; MAX_SUB], m: [0; MAX_SUB], q: [0; QK_K] }
    }
}

/// One fitted `q0` of a sub-block: its continuous scale `s`, squared error
/// `err` there, and `curv = Σ l²`, so that `err + curv·(s' − s)²` is the
/// error at scale `s'` with the same codes (an upper bound of the best).
#[derive(Debug, Clone, Copy, Default)]
struct Cand {
    q0: u8,
    s: f32,
    err: f32,
    curv: f32,
}

/// What phase one learnt about a sub-block.
#[derive(Debug, Clone, Copy, Default)]
struct SubFit {
    /// Squared sum of the values (the error of decoding them all to 0).
    sumsq: f32,
    /// Fitted candidates, by increasing error.
    cands: [Cand; MAX_CAND],
    /// How many of `cands` are set (0 for an all-zero sub-block).
    n: usize,
}

impl SubFit {
    /// The fitted candidates, best first.
    fn cands(&self) -> &[Cand] {
        &self.cands[..self.n]
    }
}

/// The scale and minimum chosen for a sub-block.
#[derive(Debug, Clone, Copy, Default)]
struct Choice {
    sc: u8,
    m: u8,
    q0: u8,
}

/// A super-block scale, its minimums' scale and their ratio.
#[derive(Debug, Clone, Copy)]
struct Scales {
    d: f16,
    dmin: f16,
    r: u32,
}

/// Rounds to the nearest integer (ties to even) for `|v| < 2^22`, without
/// the libm call that `f32::round` is on x86-64 without SSE4.1.
#[inline(always)]
fn round_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (v + MAGIC) - MAGIC
}

/// The grid offset of `x` for step `1/inv` on levels `lo..=hi`: nearest, clamped.
#[inline(always)]
fn level(x: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    let v = x * inv;
    let v = if lo > v { lo } else { v };
    let v = if hi < v { hi } else { v };
    round_small(v)
}

/// Independent accumulators, so that the reductions below vectorize
/// (sub-blocks are 16 or 32 values).
const LANES: usize = 4;

/// The levels of one lane group of `xs` (written as separate fixed-size
/// loops so that they vectorize).
#[inline(always)]
fn levels(chunk: &[f32], inv: f32, lo: f32, hi: f32) -> ([f32; LANES], [f32; LANES]) {
    let mut x = [0f32; LANES];
    x.copy_from_slice(chunk);
    let mut l = [0f32; LANES];
    for i in 0..LANES {
        l[i] = level(x[i], inv, lo, hi);
    }
    (x, l)
}

/// Squared error of `xs` on the grid `s·(lo..=hi)`.
fn grid_error(xs: &[f32], s: f32, lo: f32, hi: f32) -> f32 {
    let inv = 1.0 / s;
    let mut acc = [0f32; LANES];
    for chunk in xs.chunks_exact(LANES) {
        let (x, l) = levels(chunk, inv, lo, hi);
        for i in 0..LANES {
            let e = x[i] - s * l[i];
            acc[i] += e * e;
        }
    }
    acc.iter().sum()
}

/// `(Σ x·l, Σ l²)` for the levels `l` of `xs` at step `s`.
fn grid_moments(xs: &[f32], s: f32, lo: f32, hi: f32) -> (f32, f32) {
    let inv = 1.0 / s;
    let (mut sxl, mut sll) = ([0f32; LANES], [0f32; LANES]);
    for chunk in xs.chunks_exact(LANES) {
        let (x, l) = levels(chunk, inv, lo, hi);
        for i in 0..LANES {
            sxl[i] += x[i] * l[i];
        }
        for i in 0..LANES {
            sll[i] += l[i] * l[i];
        }
    }
    (sxl.iter().sum(), sll.iter().sum())
}

/// Best continuous scale for `xs` with zero at code `q0`: trial scales, each
/// refined once by least squares.
fn fit_scale(xs: &[f32], q0: u8, extremes: (f32, f32), sumsq: f32, fmt: &Format) -> Cand {
    let (apos, aneg) = extremes;
    let lo = -f32::from(q0);
    let hi = f32::from(fmt.nmax - q0);
    let s_pos = if hi > 0.0 { apos / hi } else { 0.0 };
    let s_neg = if q0 > 0 { aneg / -lo } else { 0.0 };
    let s0 = s_pos.max(s_neg);
    let mut best = Cand { q0, s: 0.0, err: sumsq, curv: 0.0 };
    if s0 <= 0.0 {
        return best;
    }
    for &f in fmt.trials {
        let mut s = s0 * f;
        let mut fitted = None;
        for _ in 0..fmt.refits {
            let (sxl, sll) = grid_moments(xs, s, lo, hi);
            if sll <= 0.0 || sxl <= 0.0 {
                break;
            }
            s = sxl / sll;
            fitted = Some((sxl, sll));
        }
        if let Some((sxl, sll)) = fitted {
            let err = (sumsq - sxl * sxl / sll).max(0.0);
            if err < best.err {
                best = Cand { q0, s, err, curv: sll };
            }
        }
    }
    best
}

/// Phase one: fits the `q0` around the balanced one (the code that puts the
/// grid's ends at the sub-block's extremes), best first.
fn fit_sub(xs: &[f32], fmt: &Format) -> SubFit {
    let (mut pos, mut neg, mut sq) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    for chunk in xs.chunks_exact(LANES) {
        for (i, &x) in chunk.iter().enumerate() {
            pos[i] = if x > pos[i] { x } else { pos[i] };
            neg[i] = if -x > neg[i] { -x } else { neg[i] };
            sq[i] += x * x;
        }
    }
    let apos = pos.iter().fold(0f32, |a, &b| a.max(b));
    let aneg = neg.iter().fold(0f32, |a, &b| a.max(b));
    let sumsq: f32 = sq.iter().sum();
    let mut fit = SubFit { sumsq, ..SubFit::default() };
    if sumsq == 0.0 {
        return fit;
    }
    let balanced = f32::from(fmt.nmax) * aneg / (apos + aneg);
    let n = fmt.q0_window.min(fmt.nmax + 1);
    let first = (balanced.round() as u8).saturating_sub(n / 2).min(fmt.nmax + 1 - n);
    for q0 in first..first + n {
        let c = fit_scale(xs, q0, (apos, aneg), sumsq, fmt);
        if c.curv > 0.0 {
            fit.cands[fit.n] = c;
            fit.n += 1;
        }
    }
    fit.cands[..fit.n].sort_unstable_by(|a, b| a.err.total_cmp(&b.err));
    fit
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The scale codes that keep zero exact for `q0` under ratio `r`: multiples
/// of the returned step up to the returned cap (0: none), since
/// `m = sc·q0 / r` must be a whole code.
fn sc_lattice(q0: u8, r: u32, smax: u8) -> (u32, u32) {
    if q0 == 0 {
        return (1, u32::from(smax));
    }
    let q0 = u32::from(q0);
    let step = r / gcd(r, q0);
    let cap = (u32::from(smax) * r / q0).min(u32::from(smax));
    (step, cap - cap % step)
}

/// The lattice scale codes around the fitted scale `s` at super-block scale `d`.
fn sc_near(s: f32, d: f32, (step, cap): (u32, u32), reach: u32) -> impl Iterator<Item = u32> {
    let kmax = cap / step;
    let k0 = ((s / d / step as f32).min(kmax as f32).floor() as u32).min(kmax);
    let lo = (k0 + 1).saturating_sub(reach).max(1);
    let hi = (k0 + reach).min(kmax);
    (lo..=hi).map(move |k| k * step)
}

/// An f16 `d` near `target` with `r·d` exactly an f16, dropping low mantissa
/// bits of `d` as needed. Targets below f16's range use its smallest step.
fn scale_pair(target: f32, r: u32) -> Option<Scales> {
    let d = f16::from_f32(target).max(f16::from_bits(1));
    for drop in 0..=10u16 {
        let d = if drop == 0 {
            d
        } else {
            f16::from_bits((d.to_bits() + (1 << (drop - 1))) & !((1 << drop) - 1))
        };
        if !d.is_finite() {
            return None;
        }
        let dmin = d.to_f32() * r as f32;
        let dmin16 = f16::from_f32(dmin);
        if dmin16.is_finite() && dmin16.to_f32() == dmin {
            return Some(Scales { d, dmin: dmin16, r });
        }
    }
    None
}

/// The scale-code lattices of a sub-block's candidates under one ratio.
type Lattices = [(u32, u32); MAX_CAND];

/// The lattices of every candidate of `fit` under ratio `r`.
fn lattices(fit: &SubFit, r: u32, smax: u8) -> Lattices {
    let mut out = [(1, 0); MAX_CAND];
    for (l, c) in out.iter_mut().zip(fit.cands()) {
        *l = sc_lattice(c.q0, r, smax);
    }
    out
}

/// The modelled error of a sub-block at super-block scale `d`: its
/// candidates at the nearby lattice scales, by the quadratic model.
fn model_sub(fit: &SubFit, lattices: &Lattices, d: f32, reach: u32) -> f32 {
    let mut best = fit.sumsq;
    for (c, &lattice) in fit.cands().iter().zip(lattices) {
        if c.err >= best {
            break;
        }
        if lattice.1 == 0 {
            continue;
        }
        for sc in sc_near(c.s, d, lattice, reach) {
            let ds = d * sc as f32 - c.s;
            best = best.min(c.err + c.curv * ds * ds);
        }
    }
    best
}

/// The exact best representable `(sc, m, q0)` of a sub-block at the given
/// scales, and its squared error. Candidates whose fitted error already
/// exceeds the best found are skipped.
fn choose_sub(xs: &[f32], fit: &SubFit, d: f32, r: u32, fmt: &Format) -> (Choice, f32) {
    let mut best = (Choice::default(), fit.sumsq);
    for c in fit.cands() {
        if c.err >= best.1 {
            break;
        }
        let lattice = sc_lattice(c.q0, r, fmt.smax);
        if lattice.1 == 0 {
            continue;
        }
        let lo = -f32::from(c.q0);
        let hi = f32::from(fmt.nmax - c.q0);
        for sc in sc_near(c.s, d, lattice, fmt.sc_reach) {
            let err = grid_error(xs, d * sc as f32, lo, hi);
            if err < best.1 {
                let m = (sc * u32::from(c.q0) / r) as u8;
                best = (Choice { sc: sc as u8, m, q0: c.q0 }, err);
            }
        }
    }
    best
}

/// The super-block scale `d` a ratio calls for: large enough that every
/// sub-block reaches its fitted scale with a `q0` nearly as good as its
/// best within the `sc` that `q0` allows.
fn base_scale(fits: &[SubFit], lat: &[Lattices], fmt: &Format) -> f32 {
    let need = |(fit, lat): (&SubFit, &Lattices)| {
        let good = fit.cands().first().map_or(0.0, |c| c.err * TOL.with(|t| t.get()));
        fit.cands()
            .iter()
            .zip(lat)
            .filter(|(c, &(_, cap))| c.err <= good && cap > 0)
            .map(|(c, &(_, cap))| c.s / cap as f32)
            .fold(f32::INFINITY, f32::min)
    };
    let _ = fmt;
    fits.iter().zip(lat).filter(|(f, _)| f.n > 0).map(need).filter(|d| d.is_finite()).fold(0.0, f32::max)
}

thread_local! { static TOL: std::cell::Cell<f32> = const { std::cell::Cell::new(1.15) }; }

/// Phase two: the `(ratio, d)` pairs with the lowest modelled error, best first.
fn shortlist(fits: &[SubFit], fmt: &Format) -> ([Option<(f32, Scales)>; MAX_FINALISTS], usize) {
    let keep = fmt.finalists.clamp(1, MAX_FINALISTS);
    let mut list: [Option<(f32, Scales)>; MAX_FINALISTS] = [None; MAX_FINALISTS];
    let mut lat = [[(1, 0); MAX_CAND]; MAX_SUB];
    for &r in fmt.ratios {
        let r = u32::from(r);
        for (l, f) in lat.iter_mut().zip(fits) {
            *l = lattices(f, r, fmt.smax);
        }
        let d0 = base_scale(fits, &lat, fmt);
        for i in 0..fmt.d_tries {
            let stretch = 1.0 + i as f32 / (fmt.d_tries as f32 * f32::from(fmt.smax));
            let Some(scales) = scale_pair(d0 * stretch, r) else {
                continue;
            };
            let d = scales.d.to_f32();
            let total: f32 = fits.iter().zip(&lat).map(|(f, l)| model_sub(f, l, d, fmt.sc_reach)).sum();
            insert_sorted(&mut list[..keep], (total, scales));
        }
    }
    (list, keep)
}

/// Inserts into a short list sorted by increasing error, dropping the worst.
fn insert_sorted(list: &mut [Option<(f32, Scales)>], item: (f32, Scales)) {
    let Some(pos) = list.iter().position(|x| x.is_none_or(|(e, _)| item.0 < e)) else {
        return;
    };
    list[pos..].rotate_right(1);
    list[pos] = Some(item);
}

/// Encodes one super-block of `QK_K` values into `plan`, keeping zeros exact.
/// When `intended` is given, writes what each value will decode to.
pub(crate) fn encode_superblock(xs: &[f32], fmt: &Format, plan: &mut Plan, intended: Option<&mut [f32]>) {
    debug_assert_eq!(xs.len(), QK_K);
    let nsub = fmt.nsub();
    let mut fits = [SubFit::default(); MAX_SUB];
    for (fit, chunk) in fits.iter_mut().zip(xs.chunks_exact(fmt.sub)) {
        *fit = fit_sub(chunk, fmt);
    }
    let fits = &fits[..nsub];
    *plan = Plan::zero();
    let mut best_err = f32::INFINITY;
    let mut best = [Choice::default(); MAX_SUB];
    let (list, n) = shortlist(fits, fmt);
    for scales in list[..n].iter().flatten().map(|x| x.1) {
        let d = scales.d.to_f32();
        let mut total = 0f32;
        let mut choices = [Choice::default(); MAX_SUB];
        for (j, (fit, chunk)) in fits.iter().zip(xs.chunks_exact(fmt.sub)).enumerate() {
            let (c, err) = choose_sub(chunk, fit, d, scales.r, fmt);
            choices[j] = c;
            total += err;
        }
        if total < best_err {
            best_err = total;
            best = choices;
            plan.d = scales.d;
            plan.dmin = scales.dmin;
        }
    }
    write_codes(xs, fmt, &best[..nsub], plan, intended);
}

/// Final pass: codes of every value under the chosen scales (zeros get `q0`).
fn write_codes(xs: &[f32], fmt: &Format, choices: &[Choice], plan: &mut Plan, mut intended: Option<&mut [f32]>) {
    let d = plan.d.to_f32();
    for (j, (c, chunk)) in choices.iter().zip(xs.chunks_exact(fmt.sub)).enumerate() {
        plan.sc[j] = c.sc;
        plan.m[j] = c.m;
        let base = j * fmt.sub;
        let s = d * f32::from(c.sc);
        let lo = -f32::from(c.q0);
        let hi = f32::from(fmt.nmax - c.q0);
        let inv = if c.sc == 0 { 0.0 } else { 1.0 / s };
        for (i, &x) in chunk.iter().enumerate() {
            let l = if c.sc == 0 { 0.0 } else { level(x, inv, lo, hi) };
            plan.q[base + i] = (l as i32 + i32::from(c.q0)) as u8;
            if let Some(out) = intended.as_deref_mut() {
                out[base + i] = s * l;
            }
        }
    }
}

#[cfg(test)]
mod scratch {
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ5K, BlockQ4K, BlockQ2K, GgmlType};
    fn gen(seed: u64, sparse: bool) -> [f32; 256] {
        let mut s = seed;
        let mut rnd = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 11) as f64 / (1u64 << 53) as f64 };
        let mut xs = [0f32; 256];
        for x in xs.iter_mut() { let u: f64 = rnd().max(1e-300); let v = rnd(); *x = ((-2.0 * u.ln()).sqrt() * (6.283185 * v).cos()) as f32 * 0.02; }
        if sparse {
        let mut idx: Vec<usize> = (0..256).collect();
        idx.sort_by(|&a, &b| xs[a].abs().total_cmp(&xs[b].abs()));
        for &i in &idx[..77] { xs[i] = 0.0; }
        }
        xs
    }
    fn plain<T: GgmlType>(xs: &[f32; 256]) -> [f32; 256] {
        let mut b = vec![T::zeros()];
        T::from_float(xs, &mut b);
        let mut out = [0f32; 256];
        T::to_float(&b, &mut out);
        out
    }
    fn sse_nz(xs: &[f32], ys: &[f32]) -> f32 { xs.iter().zip(ys).filter(|(a, _)| **a != 0.0).map(|(a, b)| (a - b) * (a - b)).sum() }
    fn run(fmt: &Format, name: &str, sparse: bool) -> f32 {
        let (mut ours, mut pl) = (0f32, 0f32);
        for seed in 1..80u64 {
            let xs = gen(seed * 7919, sparse);
            let y = match name { "q5k" => plain::<BlockQ5K>(&xs), "q4k" => plain::<BlockQ4K>(&xs), _ => plain::<BlockQ2K>(&xs) };
            pl += sse_nz(&xs, &y);
            let mut plan = Plan::zero();
            let mut out = [0f32; 256];
            encode_superblock(&xs, fmt, &mut plan, Some(&mut out));
            ours += sse_nz(&xs, &out);
        }
        (ours / pl).sqrt()
    }
    fn speed(fmt: &Format, name: &str) -> (f64, f64) {
        let n = 1 << 20;
        let mut data = Vec::with_capacity(n);
        for seed in 0..(n / 256) as u64 { data.extend_from_slice(&gen(seed + 1, true)); }
        let mut plan = Plan::zero();
        let t = std::time::Instant::now();
        let mut sink = 0u32;
        for xs in data.chunks_exact(256) { encode_superblock(xs, fmt, &mut plan, None); sink += u32::from(plan.q[3]); }
        let ours = n as f64 / t.elapsed().as_secs_f64() / 1e6;
        let t = std::time::Instant::now();
        let nb = n / 256;
        match name {
            "q5k" => { let mut b = vec![BlockQ5K::zeros(); nb]; BlockQ5K::from_float(&data, &mut b); }
            "q4k" => { let mut b = vec![BlockQ4K::zeros(); nb]; BlockQ4K::from_float(&data, &mut b); }
            _ => { let mut b = vec![BlockQ2K::zeros(); nb]; BlockQ2K::from_float(&data, &mut b); }
        }
        let plain = n as f64 / t.elapsed().as_secs_f64() / 1e6;
        assert!(sink < u32::MAX);
        (ours, plain)
    }
    #[test]
    fn wide() {
        const ALL4: &[u8] = &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        const ALL5: &[u8] = &[4, 6, 8, 9, 10, 12, 14, 15, 16, 18, 20, 21, 24, 27, 28, 30];
        let cfgs: Vec<(&str, Format)> = vec![
            ("q4k", Q4K),
            ("q4k", Format { ratios: ALL4, ..Q4K }),
            ("q4k", Format { ratios: ALL4, finalists: 2, ..Q4K }),
            ("q4k", Format { ratios: ALL4, finalists: 3, d_tries: 6, ..Q4K }),
            ("q4k", Format { ratios: ALL4, finalists: 3, d_tries: 6, sc_reach: 2, ..Q4K }),
            ("q5k", Q5K),
            ("q5k", Format { ratios: ALL5, ..Q5K }),
            ("q5k", Format { ratios: ALL5, finalists: 2, ..Q5K }),
            ("q5k", Format { ratios: ALL5, finalists: 3, d_tries: 6, ..Q5K }),
            ("q2k", Q2K),
            ("q2k", Format { finalists: 2, d_tries: 8, ..Q2K }),
        ];
        for (name, fmt) in cfgs {
            let (o, _) = speed(&fmt, name);
            println!("{name} {:?} fin{} reach{} d{}: {:.4} dense {:.4} {o:.1} M/s", fmt.ratios, fmt.finalists, fmt.sc_reach, fmt.d_tries, run(&fmt, name, true), run(&fmt, name, false));
        }
    }
    #[test]
    fn fits() {
        for (name, base) in [("q4k", Q4K), ("q5k", Q5K), ("q2k", Q2K)] {
            let cfgs: Vec<Format> = vec![
                base,
                Format { trials: &[1.0], refits: 2, ..base },
                Format { trials: &[1.0], refits: 3, ..base },
                Format { trials: &[1.0], refits: 4, ..base },
                Format { trials: &[1.0, 0.85], refits: 2, ..base },
                Format { trials: &[1.0, 0.9, 0.8], refits: 2, ..base },
                Format { trials: &[1.0, 0.7, 0.5], refits: 2, ..base },
                Format { trials: &[1.0, 0.93, 0.86, 0.78], refits: 3, ..base },
                Format { q0_window: 4, ..base },
                Format { q0_window: 4, trials: &[1.0], refits: 3, ..base },
            ];
            for fmt in cfgs {
                let (o, _) = speed(&fmt, name);
                println!("{name} trials {:?} refits {} w{}: {:.4} {o:.1} M/s", fmt.trials, fmt.refits, fmt.q0_window, run(&fmt, name, true));
            }
        }
    }
    #[test]
    fn ircount() {
        let n = 1 << 16;
        let mut data = Vec::with_capacity(n);
        for seed in 0..(n / 256) as u64 { data.extend_from_slice(&gen(seed + 1, true)); }
        let fmt = match std::env::var("FMT").as_deref() { Ok("q2k") => Q2K, Ok("q5k") => Q5K, _ => Q4K };
        let mut plan = Plan::zero();
        let mut sink = 0u32;
        for xs in data.chunks_exact(256) { encode_superblock(xs, &fmt, &mut plan, None); sink += u32::from(plan.q[5]); }
        println!("sink {sink}");
    }
    #[test]
    fn phases() {
        let n = 1 << 20;
        let mut data = Vec::with_capacity(n);
        for seed in 0..(n / 256) as u64 { data.extend_from_slice(&gen(seed + 1, true)); }
        for fmt in [&Q4K, &Q2K] {
            let t = std::time::Instant::now();
            let mut acc = 0f32;
            for c in data.chunks_exact(fmt.sub) { acc += fit_sub(c, fmt).cands[0].s; }
            let t1 = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            for (i, c) in data.chunks_exact(fmt.sub).enumerate() { acc += grid_error(c, 0.003 + i as f32 * 1e-9, -7.0, 8.0); }
            let t2 = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            for (i, c) in data.chunks_exact(fmt.sub).enumerate() { let (a, b) = grid_moments(c, 0.003 + i as f32 * 1e-9, -7.0, 8.0); acc += a / b; }
            let t2b = t.elapsed().as_secs_f64();
            println!("moments {:.1} M/s", n as f64 / t2b / 1e6);
            let t = std::time::Instant::now();
            for xs in data.chunks_exact(256) {
                let mut fits = [SubFit::default(); MAX_SUB];
                for (fit, chunk) in fits.iter_mut().zip(xs.chunks_exact(fmt.sub)) { *fit = fit_sub(chunk, fmt); }
                let (l, _) = shortlist(&fits[..fmt.nsub()], fmt);
                acc += l[0].map_or(0.0, |x| x.0);
            }
            let t3 = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let mut plan = Plan::zero();
            for xs in data.chunks_exact(256) { encode_superblock(xs, fmt, &mut plan, None); }
            let t4 = t.elapsed().as_secs_f64();
            println!("sub {}: phase1 {:.1} M/s, one grid_error pass {:.1} M/s, phase1+2 {:.1} M/s, all {:.1} M/s {acc}", fmt.sub, n as f64/t1/1e6, n as f64/t2/1e6, n as f64/t3/1e6, n as f64/t4/1e6);
        }
    }
    #[test]
    fn bench() {
        let cfgs: Vec<(&str, Format)> = vec![
            ("q4k", Q4K),
            ("q4k", Format { ratios: &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], finalists: 4, ..Q4K }),
            ("q4k", Format { ratios: &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], finalists: 64, sc_reach: 2, d_tries: 4, ..Q4K }),
            ("q5k", Q5K),
            ("q5k", Format { ratios: &[4, 6, 8, 10, 12, 14, 15, 16, 18, 20, 24, 28, 30], finalists: 4, ..Q5K }),
            ("q2k", Q2K),
        ];
        for (name, fmt) in cfgs {
            let (o, p) = speed(&fmt, name);
            println!("{name} {:?} fin{} reach{} d{} w{}: ratio {:.4} dense {:.4} speed {o:.1} M/s (plain {p:.1} M/s)", fmt.ratios, fmt.finalists, fmt.sc_reach, fmt.d_tries, fmt.q0_window, run(&fmt, name, true), run(&fmt, name, false));
        }
    }
    #[test]
    fn knobs() {
        let cfgs: Vec<(&str, Format)> = vec![
            ("q4k", Q4K),
            ("q4k", Format { finalists: 2, ..Q4K }),
            ("q4k", Format { ratios: &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], ..Q4K }),
            ("q4k", Format { ratios: &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], finalists: 3, sc_reach: 2, d_tries: 6, ..Q4K }),
            ("q4k", Format { ratios: &[4, 6, 8, 9, 10, 12, 14], ..Q4K }),
            ("q4k", Format { ratios: &[4, 6, 8, 12], d_tries: 6, ..Q4K }),
            ("q4k", Format { ratios: &[4, 6, 8, 12], sc_reach: 2, ..Q4K }),
            ("q4k", Format { ratios: &[4, 6, 8, 12], q0_window: 8, ..Q4K }),
            ("q5k", Q5K),
            ("q5k", Format { finalists: 2, ..Q5K }),
            ("q5k", Format { ratios: &[4, 6, 8, 10, 12, 14, 15, 16, 18, 20, 24, 28, 30], ..Q5K }),
            ("q5k", Format { ratios: &[4, 6, 8, 10, 12, 14, 15, 16, 18, 20, 24, 28, 30], finalists: 3, sc_reach: 2, d_tries: 6, ..Q5K }),
            ("q2k", Q2K),
            ("q2k", Format { finalists: 3, sc_reach: 2, d_tries: 8, ..Q2K }),
        ];
        for tol in [1.0f32, 1.05, 1.15, 1.3] {
            TOL.with(|t| t.set(tol));
            println!("tol {tol}: q4k {:.4} q5k {:.4} q2k {:.4}", run(&Q4K, "q4k", true), run(&Q5K, "q5k", true), run(&Q2K, "q2k", true));
        }
        TOL.with(|t| t.set(1.15));
        for fin in [1usize, 2, 4, 12, 64] {
            let f4 = Format { finalists: fin, ..Q4K };
            let f5 = Format { finalists: fin, ..Q5K };
            println!("fin {fin}: q4k {:.4} q5k {:.4}", run(&f4, "q4k", true), run(&f5, "q5k", true));
        }
        let f4 = Format { finalists: 64, ratios: &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], sc_reach: 2, d_tries: 4, ..Q4K };
        println!("q4k all exact {:.4}", run(&f4, "q4k", true));
        // continuous bound
        let (mut p1, mut pl) = (0f32, 0f32);
        for seed in 1..80u64 {
            let xs = gen(seed * 7919, true);
            pl += sse_nz(&xs, &plain::<BlockQ4K>(&xs));
            for c in xs.chunks_exact(32) { let f = fit_sub(c, &Format { q0_window: 8, ..Q4K }); p1 += f.cands().first().map_or(f.sumsq, |c| c.err); }
        }
        println!("q4k continuous bound {:.4}", (p1 / pl).sqrt());
        for (name, fmt) in cfgs.into_iter().take(0) {
            println!("{name} {:?} fin{} reach{} d{} w{}: sparse {:.4} dense {:.4}", fmt.ratios, fmt.finalists, fmt.sc_reach, fmt.d_tries, fmt.q0_window, run(&fmt, name, true), run(&fmt, name, false));
        }
    }
}
