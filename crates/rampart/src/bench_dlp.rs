//! `rampart bench dlp`: precision, recall and throughput of the built-in
//! DLP detectors on the synthetic labelled corpus of
//! `rampart_policy::corpus`.
//!
//! Every line is scanned with every built-in detector on
//! (`Scanner::all_builtin`); a finding counts when its confidence reaches
//! the default policy's `min_confidence` for its detector (what the
//! official clients act on without an organisation policy; e-mail and phone
//! are measured although they are off by default). A finding matches a
//! label of the same detector whose span it overlaps, each label at most
//! once: unmatched findings are false positives, unmatched labels misses.
//!
//! Throughput is one thread on one core: the whole corpus, line by line,
//! scanned over and over for at least two seconds, and one 64 KiB message
//! made of concatenated lines. MB are 10^6 bytes of UTF-8 text.
//!
//! Examples print with the middle of every number and secret masked: the
//! corpus is synthetic, but a benchmark log should not look like a leak.

use anyhow::{Context as _, Result, ensure};
use rampart_policy::corpus::{self, Sample};
use rampart_policy::{Detector, Finding, Policy, Rule, Scanner};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Each throughput measurement runs at least this long.
const MIN_WALL: Duration = Duration::from_secs(2);
/// The size of the large-message measurement.
const MESSAGE_BYTES: usize = 64 * 1024;
/// Examples kept per detector and kind (misses, false positives).
const EXAMPLES: usize = 5;
/// Characters of context printed either side of an example.
const CONTEXT_CHARS: usize = 36;

#[derive(clap::Args, Debug)]
pub struct DlpArgs {
    /// Lines of synthetic chat in the corpus.
    #[arg(long, default_value_t = 20_000)]
    pub lines: usize,
    /// Seed of the corpus (the same seed gives the same corpus).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The counts and examples of one detector.
#[derive(Serialize, Debug, Default)]
struct Score {
    detector: &'static str,
    support: usize,
    tp: usize,
    fp: usize,
    #[serde(rename = "fn")]
    fn_: usize,
    precision: Option<f64>,
    recall: Option<f64>,
    f1: Option<f64>,
    /// Labels by how they were written: how many, how many missed.
    misses_by_form: BTreeMap<String, FormCount>,
    /// False positives by what they were mistaken on: a lookalike's kind,
    /// another detector's label (`label:ssn`), or `unlabelled`.
    false_positives_by_kind: BTreeMap<String, usize>,
    misses: Vec<Example>,
    false_positives: Vec<Example>,
}

impl Score {
    fn finish(&mut self) {
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        self.precision = ratio(self.tp, self.tp + self.fp);
        self.recall = ratio(self.tp, self.tp + self.fn_);
        self.f1 = match (self.precision, self.recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
    }
}

#[derive(Serialize, Debug, Default)]
struct FormCount {
    support: usize,
    missed: usize,
}

/// One line of the examples, masked.
#[derive(Serialize, Debug)]
struct Example {
    /// The label's form, or what a false positive was mistaken on.
    what: String,
    /// The finding's confidence, for false positives.
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<&'static str>,
    excerpt: String,
}

#[derive(Serialize, Debug)]
struct Throughput {
    /// Whole corpus, line by line.
    corpus_bytes: usize,
    corpus_passes: usize,
    corpus_seconds: f64,
    corpus_mb_per_s: f64,
    lines_per_s: f64,
    /// One message of concatenated lines.
    message_bytes: usize,
    message_scans: usize,
    message_us: f64,
    message_mb_per_s: f64,
    /// Only the lines with nothing to find: ordinary chat, the common case
    /// (the labelled corpus is far denser in findings than real traffic).
    ordinary_lines: usize,
    ordinary_mb_per_s: f64,
    /// The corpus line by line with every detector on (e-mail and phone too).
    all_on_corpus_mb_per_s: f64,
}

#[derive(Serialize, Debug)]
struct Report {
    seed: u64,
    lines: usize,
    bytes: usize,
    detectors: Vec<Score>,
    /// All detectors that are on by default (e-mail and phone are not),
    /// summed.
    default_on: Score,
    throughput: Throughput,
}

pub fn dlp(args: &DlpArgs) -> Result<()> {
    ensure!(args.lines >= 1, "--lines must be at least 1");
    if !args.json {
        eprintln!("generating {} lines (seed {})...", args.lines, args.seed);
    }
    let corpus = corpus::generate(args.seed, args.lines);
    let scanner = Scanner::all_builtin();
    let policy = Policy::default();
    let acted_on = |f: &Finding| match &f.rule {
        Rule::Builtin(d) => f.confidence >= policy.dlp.rule(*d).min_confidence,
        Rule::Custom(_) => false,
    };

    let mut scores: BTreeMap<Detector, Score> = Detector::ALL
        .into_iter()
        .map(|d| {
            let score = Score {
                detector: d.id(),
                ..Score::default()
            };
            (d, score)
        })
        .collect();
    for sample in &corpus {
        let findings: Vec<Finding> = scanner
            .scan(&sample.text)
            .into_iter()
            .filter(acted_on)
            .collect();
        score(sample, &findings, &mut scores);
    }
    let mut default_on = Score {
        detector: "all (default on)",
        ..Score::default()
    };
    for (d, s) in &mut scores {
        s.finish();
        if !matches!(d, Detector::Email | Detector::Phone) {
            default_on.support += s.support;
            default_on.tp += s.tp;
            default_on.fp += s.fp;
            default_on.fn_ += s.fn_;
        }
    }
    default_on.finish();

    if !args.json {
        eprintln!(
            "measuring throughput (one thread, four runs of at least {}s)...",
            MIN_WALL.as_secs()
        );
    }
    // Throughput with what clients run when the organisation set nothing:
    // the default policy, which leaves e-mail and phone detection off.
    let default_scanner = Scanner::new(&rampart_policy::Policy::default().dlp)
        .context("compiling the default policy")?;
    let mut throughput = throughput(&default_scanner, &corpus);
    throughput.all_on_corpus_mb_per_s = corpus_rate(&scanner, &corpus);
    let report = Report {
        seed: args.seed,
        lines: corpus.len(),
        bytes: corpus.iter().map(|s| s.text.len()).sum(),
        detectors: scores.into_values().collect(),
        default_on,
        throughput,
    };
    print(&report, args.json)
}

/// Matches the findings of one line to its labels.
fn score(sample: &Sample, findings: &[Finding], scores: &mut BTreeMap<Detector, Score>) {
    let overlaps = |a: &Range<usize>, b: &Range<usize>| a.start < b.end && b.start < a.end;
    let mut matched = vec![false; sample.labels.len()];
    for l in &sample.labels {
        if let Some(s) = scores.get_mut(&l.detector) {
            s.support += 1;
            s.misses_by_form.entry(l.form.clone()).or_default().support += 1;
        }
    }
    for f in findings {
        let Rule::Builtin(d) = f.rule else { continue };
        let hit = sample
            .labels
            .iter()
            .enumerate()
            .find(|(i, l)| !matched[*i] && l.detector == d && overlaps(&l.span, &f.span));
        let Some(s) = scores.get_mut(&d) else {
            continue;
        };
        if let Some((i, _)) = hit {
            matched[i] = true;
            s.tp += 1;
            continue;
        }
        s.fp += 1;
        let what = if let Some(l) = sample
            .lookalikes
            .iter()
            .find(|l| overlaps(&l.span, &f.span))
        {
            l.kind.to_owned()
        } else if let Some(l) = sample.labels.iter().find(|l| overlaps(&l.span, &f.span)) {
            if l.detector == d {
                format!("label:{} (matched twice)", l.detector)
            } else {
                format!("label:{}", l.detector)
            }
        } else {
            "unlabelled".to_owned()
        };
        *s.false_positives_by_kind.entry(what.clone()).or_default() += 1;
        keep_example(
            &mut s.false_positives,
            Example {
                what,
                confidence: Some(f.confidence.as_str()),
                excerpt: excerpt(sample, findings, &f.span),
            },
        );
    }
    for (l, _) in sample.labels.iter().zip(&matched).filter(|(_, m)| !**m) {
        let Some(s) = scores.get_mut(&l.detector) else {
            continue;
        };
        s.fn_ += 1;
        s.misses_by_form.entry(l.form.clone()).or_default().missed += 1;
        keep_example(
            &mut s.misses,
            Example {
                what: l.form.clone(),
                confidence: None,
                excerpt: excerpt(sample, findings, &l.span),
            },
        );
    }
}

/// Keeps up to `EXAMPLES`, preferring one of each kind: the first of a kind
/// not yet shown replaces a repeat.
fn keep_example(list: &mut Vec<Example>, example: Example) {
    if list.iter().any(|e| e.what == example.what) {
        if list.len() < EXAMPLES {
            list.push(example);
        }
        return;
    }
    if list.len() < EXAMPLES {
        list.push(example);
        return;
    }
    // Replace the last example whose kind appears more than once.
    let repeated = (0..list.len())
        .rev()
        .find(|&i| list.iter().filter(|e| e.what == list[i].what).count() > 1);
    if let Some(i) = repeated {
        list[i] = example;
    }
}

/// The text around `focus`, with every label, lookalike and finding masked
/// in the middle, invisible characters shown as `<U+200B>` and line breaks
/// as `⏎`.
fn excerpt(sample: &Sample, findings: &[Finding], focus: &Range<usize>) -> String {
    let text = &sample.text;
    let mut masks: Vec<Range<usize>> = sample
        .labels
        .iter()
        .map(|l| l.span.clone())
        .chain(sample.lookalikes.iter().map(|l| l.span.clone()))
        .chain(findings.iter().map(|f| f.span.clone()))
        .filter(|r| r.start < r.end && text.get(r.clone()).is_some())
        .collect();
    masks.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in masks {
        match merged.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    // Render the whole line, noting where the focus lands: the first
    // segment that reaches past its start, the first that reaches its end.
    let mut out = String::new();
    let mut count = 0;
    let (mut focus_start, mut focus_end) = (None, None);
    let mut segment = |range: Range<usize>, rendered: &str, out: &mut String| {
        if focus_start.is_none() && focus.start < range.end {
            focus_start = Some(count);
        }
        out.push_str(rendered);
        count += rendered.chars().count();
        if focus_end.is_none() && focus.end <= range.end {
            focus_end = Some(count);
        }
    };
    let mut at = 0;
    let mut buf = String::new();
    for r in merged
        .iter()
        .chain(std::iter::once(&(text.len()..text.len())))
    {
        for (i, c) in text[at..r.start.max(at)].char_indices() {
            buf.clear();
            render(c, &mut buf);
            segment(at + i..at + i + c.len_utf8(), &buf, &mut out);
        }
        if r.start < r.end {
            segment(r.clone(), &mask(&text[r.clone()]), &mut out);
            at = r.end;
        }
    }
    let focus_start = focus_start.unwrap_or(count);
    let mut focus_end = focus_end.unwrap_or(count);
    if focus_end < focus_start {
        focus_end = focus_start;
    }
    let chars: Vec<char> = out.chars().collect();
    let from = focus_start.saturating_sub(CONTEXT_CHARS);
    let to = (focus_end + CONTEXT_CHARS).min(chars.len());
    let mut s = String::new();
    if from > 0 {
        s.push('…');
    }
    s.extend(&chars[from..to]);
    if to < chars.len() {
        s.push('…');
    }
    s
}

/// A character as printed in an example.
fn render(c: char, out: &mut String) {
    match c {
        '\n' => out.push('⏎'),
        '\r' | '\t' => out.push(' '),
        c if is_invisible(c) => out.push_str(&format!("<U+{:04X}>", c as u32)),
        c => out.push(c),
    }
}

/// Format characters and odd spaces worth seeing in an example.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00A0}' | '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202F}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
        || c.is_control()
}

/// The middle of a number or secret masked: a quarter of its letters and
/// digits kept at each end, at most four, the rest `*`. PEM blocks keep
/// their BEGIN and END lines; long results are shortened.
fn mask(span: &str) -> String {
    if span.starts_with("-----BEGIN") {
        let first = span.lines().next().unwrap_or_default();
        let last = span.lines().last().unwrap_or_default();
        let body = span.len().saturating_sub(first.len() + last.len());
        let mut out = String::new();
        render_str(first, &mut out);
        out.push_str(&format!("⏎[{body} bytes masked]⏎"));
        render_str(last, &mut out);
        return out;
    }
    let significant = span.chars().filter(|c| c.is_alphanumeric()).count();
    let keep = (significant / 4).min(4);
    let mut out = String::new();
    let mut seen = 0;
    for c in span.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            if seen <= keep || seen > significant - keep {
                out.push(c);
            } else {
                out.push('*');
            }
        } else {
            render(c, &mut out);
        }
    }
    let n = out.chars().count();
    if n > 48 {
        let head: String = out.chars().take(20).collect();
        let tail: String = out.chars().skip(n - 12).collect();
        return format!("{head}…({n} chars)…{tail}");
    }
    out
}

fn render_str(s: &str, out: &mut String) {
    for c in s.chars() {
        render(c, out);
    }
}

/// Scans `texts` one by one, over and over, for at least [`MIN_WALL`];
/// returns the number of passes and the seconds they took.
fn repeat_scans(scanner: &Scanner, texts: &[&str]) -> (usize, f64) {
    let start = Instant::now();
    let mut passes = 0;
    while !texts.is_empty() && (passes == 0 || start.elapsed() < MIN_WALL) {
        for text in texts {
            std::hint::black_box(scanner.scan(std::hint::black_box(text)));
        }
        passes += 1;
    }
    (passes, start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE))
}

/// MB/s scanning the corpus line by line.
fn corpus_rate(scanner: &Scanner, corpus: &[Sample]) -> f64 {
    let lines: Vec<&str> = corpus.iter().map(|s| s.text.as_str()).collect();
    let bytes: usize = lines.iter().map(|t| t.len()).sum();
    let (passes, seconds) = repeat_scans(scanner, &lines);
    (bytes * passes) as f64 / seconds / 1e6
}

fn throughput(scanner: &Scanner, corpus: &[Sample]) -> Throughput {
    let lines: Vec<&str> = corpus.iter().map(|s| s.text.as_str()).collect();
    let corpus_bytes: usize = lines.iter().map(|t| t.len()).sum();
    let (passes, corpus_seconds) = repeat_scans(scanner, &lines);

    let mut message = String::with_capacity(MESSAGE_BYTES + 4096);
    for s in corpus.iter().cycle().take(corpus.len().max(1) * 64) {
        if message.len() >= MESSAGE_BYTES {
            break;
        }
        message.push_str(&s.text);
        message.push('\n');
    }
    let mut cut = MESSAGE_BYTES.min(message.len());
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    let (scans, message_seconds) = repeat_scans(scanner, &[message.as_str()]);

    let ordinary: Vec<&str> = corpus
        .iter()
        .filter(|s| s.labels.is_empty() && s.lookalikes.is_empty())
        .map(|s| s.text.as_str())
        .collect();
    let ordinary_bytes: usize = ordinary.iter().map(|t| t.len()).sum();
    let (ordinary_passes, ordinary_seconds) = repeat_scans(scanner, &ordinary);
    Throughput {
        all_on_corpus_mb_per_s: 0.0,
        ordinary_lines: ordinary.len(),
        ordinary_mb_per_s: (ordinary_bytes * ordinary_passes) as f64 / ordinary_seconds / 1e6,
        corpus_bytes,
        corpus_passes: passes,
        corpus_seconds,
        corpus_mb_per_s: (corpus_bytes * passes) as f64 / corpus_seconds / 1e6,
        lines_per_s: (corpus.len() * passes) as f64 / corpus_seconds,
        message_bytes: message.len(),
        message_scans: scans,
        message_us: message_seconds / scans as f64 * 1e6,
        message_mb_per_s: (message.len() * scans) as f64 / message_seconds / 1e6,
    }
}

fn print(r: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let pct = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.1}%", v * 100.0));
    println!(
        "rampart bench dlp: {} synthetic lines ({:.2} MB, seed {}), all built-in detectors, \
         findings at the default policy's min_confidence (medium)",
        r.lines,
        r.bytes as f64 / 1e6,
        r.seed
    );
    println!(
        "{:<20} {:>7} {:>6} {:>6} {:>6} {:>9} {:>7} {:>7}",
        "detector", "support", "TP", "FP", "FN", "precision", "recall", "F1"
    );
    let row = |s: &Score| {
        println!(
            "{:<20} {:>7} {:>6} {:>6} {:>6} {:>9} {:>7} {:>7}",
            s.detector,
            s.support,
            s.tp,
            s.fp,
            s.fn_,
            pct(s.precision),
            pct(s.recall),
            pct(s.f1)
        );
    };
    for s in &r.detectors {
        row(s);
    }
    row(&r.default_on);
    let t = &r.throughput;
    println!(
        "throughput, one thread, default policy (e-mail and phone off): {:.1} MB/s over the corpus line by line \
         ({:.0} lines/s, {} passes in {:.1}s); {:.1} MB/s on one {} KiB message ({:.0} µs per scan); \
         {:.1} MB/s on the {} ordinary lines (nothing to find); every detector on: {:.1} MB/s over the corpus",
        t.corpus_mb_per_s,
        t.lines_per_s,
        t.corpus_passes,
        t.corpus_seconds,
        t.message_mb_per_s,
        t.message_bytes / 1024,
        t.message_us,
        t.ordinary_mb_per_s,
        t.ordinary_lines,
        t.all_on_corpus_mb_per_s
    );
    for s in &r.detectors {
        if s.fn_ == 0 && s.fp == 0 {
            continue;
        }
        println!();
        println!("{}: {} missed, {} false positives", s.detector, s.fn_, s.fp);
        let mut forms: Vec<(&String, &FormCount)> = s
            .misses_by_form
            .iter()
            .filter(|(_, c)| c.missed > 0)
            .collect();
        forms.sort_by(|a, b| b.1.missed.cmp(&a.1.missed).then(a.0.cmp(b.0)));
        if !forms.is_empty() {
            let list: Vec<String> = forms
                .iter()
                .take(12)
                .map(|(f, c)| format!("{f} {}/{}", c.missed, c.support))
                .collect();
            let more = if forms.len() > 12 { ", …" } else { "" };
            println!("  misses by form: {}{more}", list.join(", "));
        }
        if !s.false_positives_by_kind.is_empty() {
            let mut kinds: Vec<(&String, &usize)> = s.false_positives_by_kind.iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("  false positives on: {}", list.join(", "));
        }
        for e in &s.misses {
            println!("  miss [{}] {}", e.what, e.excerpt);
        }
        for e in &s.false_positives {
            println!(
                "  false positive [{}, {}] {}",
                e.what,
                e.confidence.unwrap_or("-"),
                e.excerpt
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(mask("4111 1111 1111 1234"), "4111 **** **** 1234");
        assert_eq!(mask("536-22-8172"), "53*-**-**72");
        assert_eq!(mask("ab"), "**");
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\nBBBB\n-----END RSA PRIVATE KEY-----";
        let masked = mask(pem);
        assert!(
            !masked.contains("AAAA") && masked.starts_with("-----BEGIN RSA"),
            "{masked}"
        );
        assert_eq!(mask("12\u{200B}34"), "1*<U+200B>*4");
    }

    #[test]
    fn scoring_counts_overlaps_once() {
        let sample = corpus::Sample {
            text: "card 4111 1111 1111 1111 and order 1234".to_owned(),
            labels: vec![corpus::Label {
                detector: Detector::Card,
                span: 5..24,
                form: "visa".to_owned(),
            }],
            lookalikes: vec![corpus::Lookalike {
                kind: "order-number",
                span: 35..39,
            }],
        };
        let finding = |span: Range<usize>| Finding {
            rule: Rule::Builtin(Detector::Card),
            span,
            confidence: rampart_policy::Confidence::High,
            why: String::new(),
        };
        let mut scores: BTreeMap<Detector, Score> =
            [(Detector::Card, Score::default())].into_iter().collect();
        score(
            &sample,
            &[finding(5..24), finding(10..14), finding(35..39)],
            &mut scores,
        );
        let s = &scores[&Detector::Card];
        assert_eq!((s.support, s.tp, s.fp, s.fn_), (1, 1, 2, 0));
        assert_eq!(s.false_positives_by_kind["order-number"], 1);
        let excerpt = &s.false_positives[1].excerpt;
        assert!(!excerpt.contains("1111 1111"), "{excerpt}");
    }
}
