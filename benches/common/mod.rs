//! What the fs and etcd benchmarks share: the same keys, values and
//! shuffles for every way they time, medians, and whether a path is
//! mounted.

#![allow(dead_code)]

use std::fs;
use std::path::Path;

/// splitmix64: keys, values and shuffles, the same for every way.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value of key `i` in generation `g`: `len` pseudo-random,
/// incompressible bytes.
pub fn value(i: usize, g: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut s = mix((i as u64) << 8 ^ g);
    while out.len() < len {
        s = mix(s);
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// 0..n in an order that `seed` fixes.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (mix(seed ^ i as u64) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// The program's arguments, read flag by flag: a flag's value, a number
/// (`1_000_000` allowed), or a mistake, which prints `usage` and exits 2.
/// `--bench` (passed by `cargo bench`) is skipped, `-h` prints `usage`.
pub struct Flags {
    args: std::iter::Skip<std::env::Args>,
    usage: &'static str,
}

impl Flags {
    pub fn new(usage: &'static str) -> Flags {
        Flags {
            args: std::env::args().skip(1),
            usage,
        }
    }

    pub fn next_flag(&mut self) -> Option<String> {
        loop {
            match self.args.next()?.as_str() {
                "--bench" => continue,
                "-h" | "--help" => self.usage(),
                flag => return Some(flag.to_string()),
            }
        }
    }

    pub fn value(&mut self) -> String {
        self.args.next().unwrap_or_else(|| self.usage())
    }

    pub fn num(&mut self) -> u64 {
        let v = self.value();
        v.replace('_', "").parse().unwrap_or_else(|_| self.usage())
    }

    pub fn unknown(&self, flag: &str) -> ! {
        eprintln!("unknown argument {flag}");
        self.usage()
    }

    pub fn usage(&self) -> ! {
        eprintln!("usage: {}", self.usage);
        std::process::exit(2)
    }
}

/// A field of /proc/self/status in bytes (it is given in kB).
pub fn status_bytes(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}
