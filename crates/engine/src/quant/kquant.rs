//! The zero-preserving encoder for the K-quants with a per-sub-block minimum
//! (Q2_K, Q4_K, Q5_K).
//!
//! These formats dequantize sub-block `j` of a 256-value super-block as
//! `y = (d·sc_j)·q − dmin·m_j` with f16 `d`, `dmin`, small integer scales
//! `sc_j`, minimums `m_j` and codes `q` in `0..=nmax`. A weight of 0 comes back
//! as exactly 0 iff `d·sc_j·q0 == dmin·m_j` for some code `q0`. The encoder
//! makes that hold by choosing, per super-block, an integer ratio `r` with
//! `dmin = r·d` exactly in f16 and, per sub-block, `m_j = sc_j·q0_j / r`
//! (a whole code in range). Every product involved has at most 22
//! significant bits, so f32 evaluates both sides exactly and the sub-block's
//! grid is `d·sc_j·(q − q0_j)`: 0 is on it, and zeros decode to exactly 0.
//!
//! The ratio is the hard part: under `r`, a sub-block may only use scale
//! codes that are multiples of `r / gcd(r, q0)` (and small enough for `m`),
//! so only the `q0` that `r` divides get every scale code. Sub-blocks of one
//! super-block prefer different `q0` (their extremes are not symmetric), so
//! the search tries many ratios (composite ones serve several `q0`).
//!
//! The search minimises the squared error of the non-zero weights (zeros
//! cost nothing: they land on the grid):
//!
//! 1. per sub-block, for the `q0` around the balanced one, a continuous
//!    scale from a few trial scales each refined by least squares, with its
//!    error and curvature `Σ l²` (so `err + Σl²·(s' − s)²` models the error
//!    at another scale `s'`);
//! 2. per super-block, every ratio at the `d` it needs, then the best few
//!    ratios at slightly larger `d`, ranked by the modelled error of each
//!    sub-block's best candidate at the lattice scales next to its fit;
//! 3. the best few `(ratio, d)` evaluated exactly, candidate by candidate
//!    until a candidate's fitted error exceeds the best found.
//!
//! Everything lives on the stack, the work per value is bounded, and the
//! hot loops run on fixed-size sub-blocks so they compile to SIMD.

use half::f16;

/// Values in a super-block (the kernels' definition).
pub(crate) use crate::kernels::layout::QK_K;
/// Most sub-blocks in a super-block (Q2_K's 16 of 16 values).
const MAX_SUB: usize = 16;
/// Most `q0` candidates fitted per sub-block.
const MAX_CAND: usize = 6;
/// A candidate within this factor of a sub-block's best error counts as
/// acceptable when sizing the super-block scale.
const NEAR_BEST: f32 = 1.1;
/// Most `(ratio, d)` pairs evaluated exactly.
const MAX_FINALISTS: usize = 4;

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
    /// Ratios whose modelled error is lowest at their base `d`, modelled
    /// again at other `d` (at most `MAX_FINALISTS`).
    refined_ratios: usize,
    /// Super-block scales `d` tried per refined ratio.
    d_tries: usize,
    /// Lattice scale codes tried on each side of a fitted scale.
    sc_reach: u32,
    /// Best modelled `(ratio, d)` pairs evaluated exactly (at most `MAX_FINALISTS`).
    finalists: usize,
}

/// Q2_K: 16 sub-blocks of 16, codes 0..=3, 4-bit scales and minimums.
pub(crate) const Q2K: Format = Format {
    sub: 16,
    nmax: 3,
    smax: 15,
    trials: &[1.0, 0.75, 0.55, 0.4],
    refits: 2,
    q0_window: 3,
    ratios: &[1, 2, 3],
    refined_ratios: 3,
    d_tries: 4,
    sc_reach: 1,
    finalists: 2,
};

/// Q4_K: 8 sub-blocks of 32, codes 0..=15, 6-bit scales and minimums.
pub(crate) const Q4K: Format = Format {
    sub: 32,
    nmax: 15,
    smax: 63,
    trials: &[1.0, 0.93, 0.86, 0.78],
    refits: 2,
    q0_window: 6,
    ratios: &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    refined_ratios: 3,
    d_tries: 3,
    sc_reach: 1,
    finalists: 3,
};

/// Q5_K: 8 sub-blocks of 32, codes 0..=31, 6-bit scales and minimums.
pub(crate) const Q5K: Format = Format {
    sub: 32,
    nmax: 31,
    smax: 63,
    trials: &[1.0, 0.93, 0.86, 0.78],
    refits: 2,
    q0_window: 6,
    ratios: &[4, 6, 8, 9, 10, 12, 14, 15, 16, 18, 20, 21, 24, 27, 28, 30],
    refined_ratios: 3,
    d_tries: 3,
    sc_reach: 1,
    finalists: 3,
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
    let v = if v < lo { lo } else { v };
    let v = if v > hi { hi } else { v };
    round_small(v)
}

/// Independent accumulators per reduction: with fixed-size sub-blocks the
/// loops below unroll into branch-free SIMD.
const LANES: usize = 8;

/// Squared error of `xs` on the grid `s·(lo..=hi)`.
fn grid_error<const N: usize>(xs: &[f32; N], s: f32, lo: f32, hi: f32) -> f32 {
    let inv = 1.0 / s;
    let mut acc = [0f32; LANES];
    for x in xs.as_chunks::<LANES>().0 {
        for i in 0..LANES {
            let e = x[i] - s * level(x[i], inv, lo, hi);
            acc[i] += e * e;
        }
    }
    acc.iter().sum()
}

/// `(Σ x·l, Σ l²)` for the levels `l` of `xs` at step `s`.
fn grid_moments<const N: usize>(xs: &[f32; N], s: f32, lo: f32, hi: f32) -> (f32, f32) {
    let inv = 1.0 / s;
    let (mut sxl, mut sll) = ([0f32; LANES], [0f32; LANES]);
    for x in xs.as_chunks::<LANES>().0 {
        for i in 0..LANES {
            let l = level(x[i], inv, lo, hi);
            sxl[i] += x[i] * l;
            sll[i] += l * l;
        }
    }
    (sxl.iter().sum(), sll.iter().sum())
}

/// Best continuous scale for `xs` with zero at code `q0`: trial scales, each
/// refined `refits` times by least squares (codes at the scale, then the
/// scale that fits those codes best).
fn fit_scale<const N: usize>(xs: &[f32; N], q0: u8, extremes: (f32, f32), sumsq: f32, fmt: &Format) -> Cand {
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
fn fit_sub<const N: usize>(xs: &[f32; N], fmt: &Format) -> SubFit {
    let (mut pos, mut neg, mut sq) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    for x in xs.as_chunks::<LANES>().0 {
        for i in 0..LANES {
            pos[i] = if x[i] > pos[i] { x[i] } else { pos[i] };
            neg[i] = if -x[i] > neg[i] { -x[i] } else { neg[i] };
            sq[i] += x[i] * x[i];
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
    let first = ((balanced + 0.5) as u8).saturating_sub(n / 2).min(fmt.nmax + 1 - n);
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

/// Greatest common divisor (a `const fn` for the lattice tables).
const fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `LATTICE[r][q0]` for a highest scale code `smax`: see [`sc_lattice`].
type LatticeTable = [[(u8, u8); 32]; 32];

/// Builds the lattice table for `smax` (`r`, `q0` below 32).
const fn lattice_table(smax: u32) -> LatticeTable {
    let mut t = [[(1u8, 0u8); 32]; 32];
    let mut r = 1;
    while r < 32 {
        let mut q0 = 0;
        while q0 < 32 {
            t[r][q0] = if q0 == 0 {
                (1, smax as u8)
            } else {
                let step = r as u32 / gcd(r as u32, q0 as u32);
                let cap = smax * r as u32 / q0 as u32;
                let cap = if cap < smax { cap } else { smax };
                (step as u8, (cap - cap % step) as u8)
            };
            q0 += 1;
        }
        r += 1;
    }
    t
}

/// Lattices of the formats with 6-bit scales (Q4_K, Q5_K).
static LATTICE_63: LatticeTable = lattice_table(63);
/// Lattices of the formats with 4-bit scales (Q2_K).
static LATTICE_15: LatticeTable = lattice_table(15);

/// The scale codes that keep zero exact for `q0` under ratio `r` (both below
/// 32): multiples of the returned step up to the returned cap (0: none),
/// since `m = sc·q0 / r` must be a whole code no larger than `smax`.
fn sc_lattice(q0: u8, r: u32, smax: u8) -> (u32, u32) {
    let table = if smax == 15 { &LATTICE_15 } else { &LATTICE_63 };
    let (step, cap) = table[r as usize][usize::from(q0)];
    (u32::from(step), u32::from(cap))
}

/// The lattice scale codes around the fitted scale `s` at super-block scale `d`.
fn sc_near(s: f32, d: f32, (step, cap): (u32, u32), reach: u32) -> impl Iterator<Item = u32> {
    let kmax = cap / step;
    // Truncation is floor here: the quotient is not negative.
    let k0 = ((s / d / step as f32) as u32).min(kmax);
    let lo = (k0 + 1).saturating_sub(reach).max(1);
    let hi = (k0 + reach).min(kmax);
    (lo..=hi).map(move |k| k * step)
}

/// An f16 `d` near `target` with `r·d` exactly an f16, dropping low mantissa
/// bits of `d` as needed. Targets below f16's range use its smallest step.
fn scale_pair(target: f32, r: u32) -> Option<Scales> {
    let d = f16::from_f32(target).max(f16::from_bits(1));
    for drop in 0..=10u16 {
        let d = if drop == 0 { d } else { f16::from_bits((d.to_bits() + (1 << (drop - 1))) & !((1 << drop) - 1)) };
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
fn choose_sub<const N: usize>(xs: &[f32; N], fit: &SubFit, d: f32, r: u32, fmt: &Format) -> (Choice, f32) {
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
fn base_scale(fits: &[SubFit], lat: &[Lattices]) -> f32 {
    let need = |(fit, lat): (&SubFit, &Lattices)| {
        let good = fit.cands().first().map_or(0.0, |c| c.err * NEAR_BEST);
        fit.cands()
            .iter()
            .zip(lat)
            .filter(|(c, &(_, cap))| c.err <= good && cap > 0)
            .map(|(c, &(_, cap))| c.s / cap as f32)
            .fold(f32::INFINITY, f32::min)
    };
    fits.iter().zip(lat).filter(|(f, _)| f.n > 0).map(need).filter(|d| d.is_finite()).fold(0.0, f32::max)
}

/// Phase two: the `(ratio, d)` pairs with the lowest modelled error, best
/// first. Every ratio is modelled at its base `d`; the best few ratios are
/// then modelled at slightly larger `d` too.
fn shortlist(fits: &[SubFit], fmt: &Format) -> ([Option<(f32, Scales)>; MAX_FINALISTS], usize) {
    let keep = fmt.finalists.clamp(1, MAX_FINALISTS);
    let mut finalists: [Option<(f32, Scales)>; MAX_FINALISTS] = [None; MAX_FINALISTS];
    let mut ratios: [Option<(f32, Scales)>; MAX_FINALISTS] = [None; MAX_FINALISTS];
    let refine = fmt.refined_ratios.clamp(1, MAX_FINALISTS);
    let mut lat = [[(1, 0); MAX_CAND]; MAX_SUB];
    for &r in fmt.ratios {
        let r = u32::from(r);
        for (l, f) in lat.iter_mut().zip(fits) {
            *l = lattices(f, r, fmt.smax);
        }
        let Some(scales) = scale_pair(base_scale(fits, &lat), r) else {
            continue;
        };
        let total = model_total(fits, &lat, scales, fmt);
        insert_sorted(&mut finalists[..keep], (total, scales));
        insert_sorted(&mut ratios[..refine], (total, scales));
    }
    for base in ratios[..refine].iter().flatten().map(|x| x.1) {
        for (l, f) in lat.iter_mut().zip(fits) {
            *l = lattices(f, base.r, fmt.smax);
        }
        for i in 1..fmt.d_tries {
            let stretch = 1.0 + i as f32 / (fmt.d_tries as f32 * f32::from(fmt.smax));
            let Some(scales) = scale_pair(base.d.to_f32() * stretch, base.r) else {
                continue;
            };
            let total = model_total(fits, &lat, scales, fmt);
            insert_sorted(&mut finalists[..keep], (total, scales));
        }
    }
    (finalists, keep)
}

/// The modelled error of a super-block at the given scales.
fn model_total(fits: &[SubFit], lat: &[Lattices], scales: Scales, fmt: &Format) -> f32 {
    let d = scales.d.to_f32();
    fits.iter().zip(lat).map(|(f, l)| model_sub(f, l, d, fmt.sc_reach)).sum()
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
    match fmt.sub {
        16 => encode::<16>(xs, fmt, plan, intended),
        _ => encode::<32>(xs, fmt, plan, intended),
    }
}

/// [`encode_superblock`] for sub-blocks of `N` values.
fn encode<const N: usize>(xs: &[f32], fmt: &Format, plan: &mut Plan, intended: Option<&mut [f32]>) {
    debug_assert_eq!(N, fmt.sub);
    let (subs, _) = xs.as_chunks::<N>();
    let mut fits = [SubFit::default(); MAX_SUB];
    for (fit, chunk) in fits.iter_mut().zip(subs) {
        *fit = fit_sub(chunk, fmt);
    }
    let fits = &fits[..subs.len()];
    *plan = Plan::zero();
    if fits.iter().all(|f| f.n == 0) {
        if let Some(out) = intended {
            out.fill(0.0);
        }
        return;
    }
    let mut best_err = f32::INFINITY;
    let mut best = [Choice::default(); MAX_SUB];
    let (list, n) = shortlist(fits, fmt);
    for scales in list[..n].iter().flatten().map(|x| x.1) {
        let d = scales.d.to_f32();
        let mut total = 0f32;
        let mut choices = [Choice::default(); MAX_SUB];
        for (j, (fit, chunk)) in fits.iter().zip(subs).enumerate() {
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
    write_codes(xs, fmt, &best[..subs.len()], plan, intended);
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
