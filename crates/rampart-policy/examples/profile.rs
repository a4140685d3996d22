#![allow(clippy::unwrap_used)]
use rampart_policy::{Detector, Policy, Scanner};
use std::time::Instant;

fn main() {
    let samples = rampart_policy::corpus::generate(1, 20000);
    let bytes: usize = samples.iter().map(|s| s.text.len()).sum();
    let time = |name: &str, scanner: &Scanner| {
        let t = Instant::now();
        let mut n = 0;
        for _ in 0..5 {
            for s in &samples {
                n += scanner.scan(&s.text).len();
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{name:24} {:8.1} MB/s ({n})",
            5.0 * bytes as f64 / secs / 1e6
        );
    };
    let mut all_off = String::from("version = 1\n");
    for d in Detector::ALL {
        all_off += &format!("[detectors.{}]\naction = \"off\"\n", d.id());
    }
    time(
        "none",
        &Scanner::new(&Policy::parse(&all_off).unwrap().dlp).unwrap(),
    );
    for d in Detector::ALL {
        let mut doc = String::from("version = 1\n");
        for o in Detector::ALL {
            let action = if o == d { "block" } else { "off" };
            doc += &format!("[detectors.{}]\naction = \"{action}\"\n", o.id());
        }
        time(
            d.id(),
            &Scanner::new(&Policy::parse(&doc).unwrap().dlp).unwrap(),
        );
    }
    time("all", &Scanner::all_builtin());
}
