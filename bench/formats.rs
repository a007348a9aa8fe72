//! The Rust half of `bench/formats.py` (run that, not this): times djauth's PBKDF2 and
//! session decoding in-process, so process start-up is not part of the figure.
//!
//!   formats pbkdf2 ITERATIONS COUNT   → median milliseconds per hash, one core
//!   formats decode FILE REPEAT        → session blobs (one per line) decoded per second, one core
//!
//! SECRET_KEY comes from DJAUTH_SECRET_KEY, like every djauth command.

use djauth::formats::hashers::Pbkdf2Hasher;
use djauth::formats::session::SessionCodec;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pbkdf2", iterations, count] => {
            pbkdf2(iterations.parse().unwrap(), count.parse().unwrap())
        }
        ["decode", file, repeat] => decode(file, repeat.parse().unwrap()),
        // `cargo test --all-targets` runs this binary with no arguments: nothing to measure.
        [] => eprintln!(
            "bench/formats.rs is driven by bench/formats.py; nothing to do without arguments"
        ),
        _ => {
            eprintln!("usage: formats pbkdf2 ITERATIONS COUNT | formats decode FILE REPEAT");
            std::process::exit(2);
        }
    }
}

fn pbkdf2(iterations: u32, count: usize) {
    let hasher = Pbkdf2Hasher::sha256(iterations);
    let mut times: Vec<f64> = (0..count)
        .map(|i| {
            let salt = format!("benchsaltbenchsalt{i:04}");
            let t = Instant::now();
            std::hint::black_box(hasher.derive(
                b"correct horse battery staple",
                salt.as_bytes(),
                iterations,
            ));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("{:.3}", times[times.len() / 2]);
}

fn decode(file: &str, repeat: usize) {
    let secret = std::env::var("DJAUTH_SECRET_KEY").expect("DJAUTH_SECRET_KEY");
    let codec = SessionCodec::new::<&[u8]>(secret.as_bytes(), &[], 1_209_600);
    let text = std::fs::read_to_string(file).expect("blob file");
    let blobs: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    // Every blob must decode, or the rate would flatter failures.
    let keys: usize = blobs
        .iter()
        .map(|b| codec.decode_db(b).expect("blob decodes").len())
        .sum();
    let t = Instant::now();
    for _ in 0..repeat {
        for b in &blobs {
            std::hint::black_box(codec.decode_db(b).ok());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("{:.1} {}", (blobs.len() * repeat) as f64 / secs, keys);
}
