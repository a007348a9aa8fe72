//! What the fuzz targets share: the keys, clock and user that fuzz/seeds.py made the seeds
//! with (so seeded signatures verify), and input helpers. Included with `#[path]`.
#![allow(dead_code)]

use std::borrow::Cow;

pub const KEY: &[u8] = b"djauth-fuzz-secret-key";
pub const OLD_KEY: &[u8] = b"djauth-fuzz-old-key";
pub const FALLBACKS: &[&[u8]] = &[OLD_KEY];
/// The seeds' clock: `time.time()` was mocked to this.
pub const NOW: f64 = 1_700_000_000.0;

pub fn now_utc() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(NOW as i64, 0).expect("in range")
}

/// The input as text (lossily: every input is worth running).
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Line `i` of a multi-field input; `None` when there are fewer lines.
pub fn line<'a>(lines: &[&'a str], i: usize) -> Option<&'a str> {
    lines.get(i).copied()
}

/// A cheap, stable hash of the input, to pick options without spending input bytes on them.
pub fn pick(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
