//! A deterministic, labelled corpus of synthetic chat lines for measuring
//! the detectors (`rampart bench dlp`) and for tests.
//!
//! **Everything here is synthetic.** Numbers are drawn at random and then
//! made valid (a brand's IIN range and the Luhn digit for cards, the issued
//! ranges for SSNs and ITINs, mod-97 check digits for IBANs); secrets are
//! random strings of the right shape. No number belongs to anyone and no key
//! opens anything; names, domains and phone numbers are made up.
//!
//! Each line is chat prose (templates in English, German, French, Spanish,
//! Japanese, Russian and Arabic, with emoji, so spans cross multi-byte text)
//! around one or two items:
//!
//! - **labelled positives** of every built-in detector: payment cards of
//!   every brand the scanner knows (Visa 13/16/19, Mastercard 51–55 and
//!   2221–2720, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir) written
//!   unseparated, in groups of four with spaces or dashes, or 4-6-5 / 4-6-4;
//!   SSNs (dashed, spaced, or bare after the word "SSN"); ITINs
//!   (9XX-7X/8X-XXXX); IBANs of thirty countries, grouped or not, sometimes
//!   lower case; AWS access key ids and secret keys (after
//!   `aws_secret_access_key=` and its variants); PEM private key blocks;
//!   GitHub (`ghp_` with its CRC-32 checksum, `github_pat_`), Slack (tokens
//!   and webhook URLs), Stripe and Google API keys; JWTs with real JSON
//!   header and payload; `password=`-style assignments of strong random
//!   values; e-mail addresses and phone numbers, labelled `Email` and
//!   `Phone` although those detectors are off by default;
//! - **labelled evasions** of cards, SSNs and IBANs: zero-width characters
//!   (U+200B, U+200D, U+2060) between digits, full-width digits,
//!   Arabic-Indic digits, Unicode dashes (U+2010, U+2013, U+2212) and
//!   no-break spaces as separators. The label covers the original bytes,
//!   inserted characters included;
//! - **unlabelled lookalikes** that must not be reported: Luhn-failing card
//!   numbers, SSNs with area 000 or 666 or group 00, IBANs with wrong check
//!   digits; and hard negatives: Luhn-valid order numbers (some starting
//!   with 4, unseparated, after "order"), IMEIs, millisecond timestamps,
//!   ISBN-13s, UUIDs, git SHAs, SHA-256 digests, SSH and PEM public keys,
//!   AWS documentation keys (`…EXAMPLE`), placeholder tokens, password
//!   placeholders (`password = ${DB_PASSWORD}`, `password: ********`), prose
//!   about passwords, dates, amounts and version numbers.
//!
//! Labels are byte ranges of [`Sample::text`]. For assignments
//! (`password=…`, `aws_secret_access_key=…`) a label covers the value only,
//! so a detector that reports the whole assignment still overlaps it.
//! Unlabelled lookalikes are listed in [`Sample::lookalikes`] with what they
//! are, so a false positive can be traced to what it was mistaken for.
//!
//! The same seed and count give the same corpus on every platform (a
//! splitmix64 generator, no `rand`), and a shorter corpus is a prefix of a
//! longer one with the same seed.
//!
//! Limits: the mix of lines is ours, not real traffic's. Precision and recall
//! measured on it compare detector versions and find blind spots; they do
//! not predict rates in the field.
//!
//! ```
//! let corpus = rampart_policy::corpus::generate(7, 100);
//! assert_eq!(corpus.len(), 100);
//! for sample in &corpus {
//!     for label in &sample.labels {
//!         assert!(sample.text.get(label.span.clone()).is_some());
//!     }
//! }
//! ```

use crate::finding::Detector;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::ops::Range;

/// One chat line and what is in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub text: String,
    /// What a perfect scanner reports, in order of position.
    pub labels: Vec<Label>,
    /// What looks like something but is not, in order of position.
    pub lookalikes: Vec<Lookalike>,
}

/// Something a detector should find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub detector: Detector,
    /// Byte range of [`Sample::text`], covering any inserted characters.
    pub span: Range<usize>,
    /// How it is written: brand and layout of a card (`visa-16/spaced`),
    /// the evasion used (`zero-width/amex-15`), the country of an IBAN…
    pub form: String,
}

/// Something no detector should report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookalike {
    /// What it is (`imei`, `luhn-fail`, `aws-doc-example`, …).
    pub kind: &'static str,
    /// Byte range of [`Sample::text`].
    pub span: Range<usize>,
}

/// `count` lines from `seed`.
pub fn generate(seed: u64, count: usize) -> Vec<Sample> {
    let mut rng = Rng(seed);
    (0..count).map(|_| line(&mut rng)).collect()
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to
/// draw test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo) + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn weighted<T: Copy>(&mut self, items: &[(u32, T)]) -> T {
        let total: u32 = items.iter().map(|(w, _)| w).sum();
        let mut at = self.below(total as usize) as u32;
        for &(w, item) in items {
            if at < w {
                return item;
            }
            at -= w;
        }
        items[0].1
    }

    fn digits(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.below(10) as u8).collect()
    }

    fn string(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(self.pick(alphabet))).collect()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ALNUM_UPPER: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const HEX: &[u8] = b"0123456789abcdef";
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const GOOGLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const SYMBOLS: &[u8] = b"!#$%&*+-.:?@^_~";

/// A line under construction: text, and the spans of what was put in it.
#[derive(Default)]
struct Builder {
    text: String,
    labels: Vec<Label>,
    lookalikes: Vec<Lookalike>,
}

impl Builder {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn label(&mut self, detector: Detector, form: String, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.labels.push(Label {
            detector,
            span: start..self.text.len(),
            form,
        });
    }

    fn lookalike(&mut self, kind: &'static str, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.lookalikes.push(Lookalike {
            kind,
            span: start..self.text.len(),
        });
    }

    fn finish(self) -> Sample {
        Sample {
            text: self.text,
            labels: self.labels,
            lookalikes: self.lookalikes,
        }
    }
}

/// What goes into a line.
#[derive(Clone, Copy, Debug)]
enum Item {
    // Labelled.
    Card,
    Ssn,
    Itin,
    Iban,
    AwsAccessKey,
    AwsSecretKey,
    PrivateKey,
    GithubToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    Jwt,
    Password,
    Email,
    Phone,
    // Labelled, disguised.
    CardEvasion,
    SsnEvasion,
    IbanEvasion,
    // Invalid lookalikes.
    LuhnFail,
    SsnInvalid,
    IbanBadCheck,
    // Hard negatives.
    Order,
    Imei,
    Timestamp,
    Isbn,
    Uuid,
    GitSha,
    Sha256,
    SshKey,
    PublicKeyBlock,
    AwsExample,
    PasswordPlaceholder,
    PasswordProse,
    TokenPlaceholder,
    Date,
    Amount,
    Version,
}

const ITEMS: &[(u32, Item)] = &[
    (10, Item::Card),
    (5, Item::Ssn),
    (3, Item::Itin),
    (6, Item::Iban),
    (3, Item::AwsAccessKey),
    (3, Item::AwsSecretKey),
    (2, Item::PrivateKey),
    (3, Item::GithubToken),
    (2, Item::SlackToken),
    (2, Item::StripeKey),
    (2, Item::GoogleApiKey),
    (3, Item::Jwt),
    (4, Item::Password),
    (4, Item::Email),
    (4, Item::Phone),
    (4, Item::CardEvasion),
    (3, Item::SsnEvasion),
    (2, Item::IbanEvasion),
    (4, Item::LuhnFail),
    (3, Item::SsnInvalid),
    (3, Item::IbanBadCheck),
    (5, Item::Order),
    (3, Item::Imei),
    (3, Item::Timestamp),
    (2, Item::Isbn),
    (2, Item::Uuid),
    (2, Item::GitSha),
    (2, Item::Sha256),
    (2, Item::SshKey),
    (1, Item::PublicKeyBlock),
    (2, Item::AwsExample),
    (3, Item::PasswordPlaceholder),
    (2, Item::PasswordProse),
    (1, Item::TokenPlaceholder),
    (2, Item::Date),
    (2, Item::Amount),
    (2, Item::Version),
];

const PROSE: &[&str] = &[
    "can we move the standup to 10:30 tomorrow?",
    "Lunch at 12? 🍕",
    "I pushed the fix, CI is green ✅",
    "Das Meeting ist auf Donnerstag verschoben.",
    "On se retrouve à la gare à 18h ?",
    "¿Puedes revisar el PR antes del viernes?",
    "明日の会議は10時からです。",
    "Созвон в 15:00, ссылка в календаре.",
    "سأرسل التقرير غدا إن شاء الله",
    "the build on staging is broken again 😩",
    "who has the keys to the server room?",
    "happy birthday Maria!!! 🎉🎂",
    "sent you the slides, check your inbox",
    "Q3 looks good, revenue up 12% vs Q2 📈",
    "I'll be out of office from 1 to 14 July",
    "Der Flug kostet 249,99 € pro Person.",
    "ça marche, merci beaucoup 🙏",
    "no te preocupes, lo hago yo",
    "レビューお願いします 🙇",
    "Хорошо, договорились 👍",
    "room 4.12 is free after 3pm",
    "the 2 new hires start on Monday",
    "can someone restart the runner? it's stuck at 97%",
    "ok 👌",
];

const OPENERS: &[&str] = &[
    "",
    "",
    "",
    "hey, ",
    "Hi team — ",
    "FYI: ",
    "ok so ",
    "Bonjour, ",
    "Hallo zusammen, ",
    "hola! ",
    "привет, ",
    "こんにちは、",
    "👋 ",
    "quick one: ",
    "as discussed, ",
    "مرحبا، ",
];

const CONNECTORS: &[&str] = &[
    " and ", "; also ", " / ", ", plus ", " — ", "\n", " und ", " y ", " 🙂 ",
];

const CLOSERS: &[&str] = &[
    "",
    "",
    "",
    " thanks!",
    " 🙏",
    " — merci",
    " danke",
    " gracias 😊",
    " ありがとう",
    " спасибо",
    " lmk if that works",
    " 👍",
    " cheers",
    " شكرا",
];

fn line(rng: &mut Rng) -> Sample {
    let mut b = Builder::default();
    if rng.chance(6) {
        b.push(rng.pick(PROSE));
        if rng.chance(40) {
            b.push(" ");
            b.push(rng.pick(PROSE));
        }
        return b.finish();
    }
    b.push(rng.pick(OPENERS));
    if rng.chance(20) {
        b.push(rng.pick(PROSE));
        b.push(" ");
    }
    let first = rng.weighted(ITEMS);
    item(rng, &mut b, first);
    if rng.chance(22) {
        b.push(rng.pick(CONNECTORS));
        let second = rng.weighted(ITEMS);
        item(rng, &mut b, second);
    }
    b.push(rng.pick(CLOSERS));
    b.finish()
}

const CARD_LEADS: &[&str] = &[
    "",
    "",
    "",
    "card ",
    "my card: ",
    "card number ",
    "the corporate card is ",
    "Kreditkarte: ",
    "numéro de carte : ",
    "tarjeta ",
    "カード番号は",
    "номер карты ",
    "pay with ",
    "use ",
    "here: ",
    "💳 ",
    "can you book it on ",
];

const CARD_TRAILS: &[&str] = &[
    "",
    "",
    ".",
    "!",
    " exp 09/27",
    " (exp 11/28)",
    ", cvc is on the back",
    "です",
    " — the usual one",
];

const SSN_LEADS: &[&str] = &[
    "",
    "",
    "SSN ",
    "ssn: ",
    "social security number ",
    "his SSN is ",
    "SSN/",
    "número de seguro social ",
    "for the W-4: ",
    "the form needs ",
];

const BARE_SSN_LEADS: &[&str] = &["SSN ", "SSN: ", "ssn#", "my SSN is ", "SSN (no dashes) "];

fn item(rng: &mut Rng, b: &mut Builder, item: Item) {
    match item {
        Item::Card => {
            let brand = rng.pick(BRANDS);
            let digits = card_digits(rng, brand);
            let (layout, text) = card_layout(rng, &digits);
            b.push(rng.pick(CARD_LEADS));
            b.label(
                Detector::Card,
                format!("{}-{}/{layout}", brand.name, digits.len()),
                &text,
            );
            b.push(rng.pick(CARD_TRAILS));
        }
        Item::CardEvasion => {
            let brand = rng.pick(BRANDS);
            let digits = card_digits(rng, brand);
            let (_, text) = card_layout(rng, &digits);
            let (evasion, text) = evade(rng, &text);
            b.push(rng.pick(CARD_LEADS));
            b.label(
                Detector::Card,
                format!("{evasion}/{}-{}", brand.name, digits.len()),
                &text,
            );
            b.push(rng.pick(CARD_TRAILS));
        }
        Item::LuhnFail => {
            let brand = rng.pick(BRANDS);
            let mut digits = card_digits(rng, brand);
            if let Some(last) = digits.last_mut() {
                *last = (*last + 1 + rng.below(9) as u8) % 10;
            }
            let (_, text) = card_layout(rng, &digits);
            b.push(rng.pick(CARD_LEADS));
            b.lookalike("luhn-fail", &text);
        }
        Item::Ssn => {
            let (area, group, serial) = ssn_parts(rng);
            match rng.below(10) {
                0..=5 => {
                    b.push(rng.pick(SSN_LEADS));
                    b.label(
                        Detector::Ssn,
                        "dashed".into(),
                        &format!("{area:03}-{group:02}-{serial:04}"),
                    );
                }
                6 | 7 => {
                    b.push(rng.pick(SSN_LEADS));
                    b.label(
                        Detector::Ssn,
                        "spaced".into(),
                        &format!("{area:03} {group:02} {serial:04}"),
                    );
                }
                _ => {
                    b.push(rng.pick(BARE_SSN_LEADS));
                    b.label(
                        Detector::Ssn,
                        "bare after SSN".into(),
                        &format!("{area:03}{group:02}{serial:04}"),
                    );
                }
            }
            b.push(rng.pick(&["", ".", ", DOB is on file", " (new hire)"]));
        }
        Item::SsnEvasion => {
            let (area, group, serial) = ssn_parts(rng);
            let text = format!("{area:03}-{group:02}-{serial:04}");
            let (evasion, text) = evade(rng, &text);
            b.push(rng.pick(SSN_LEADS));
            b.label(Detector::Ssn, evasion.into(), &text);
        }
        Item::SsnInvalid => {
            let (mut area, mut group, serial) = ssn_parts(rng);
            match rng.below(3) {
                0 => area = 0,
                1 => area = 666,
                _ => group = 0,
            }
            b.push(rng.pick(SSN_LEADS));
            let sep = rng.pick(&["-", " "]);
            b.lookalike(
                "ssn-invalid",
                &format!("{area:03}{sep}{group:02}{sep}{serial:04}"),
            );
        }
        Item::Itin => {
            let area = rng.between(900, 999);
            let group = rng.between(70, 88);
            let serial = rng.between(1, 9999);
            b.push(rng.pick(&[
                "ITIN ",
                "ITIN: ",
                "tax id ",
                "taxpayer ID ",
                "",
                "IRS ITIN ",
            ]));
            let sep = rng.pick(&["-", "-", "-", " "]);
            b.label(
                Detector::Itin,
                if sep == "-" { "dashed" } else { "spaced" }.into(),
                &format!("{area}{sep}{group}{sep}{serial:04}"),
            );
        }
        Item::Iban => {
            let country = rng.pick(IBAN_COUNTRIES);
            let iban = make_iban(rng, country, None);
            let (layout, text) = iban_layout(rng, &iban);
            b.push(rng.pick(IBAN_LEADS));
            b.label(Detector::Iban, format!("{}/{layout}", country.code), &text);
            b.push(rng.pick(&["", ".", " (BIC on the invoice)", ", ref. rent"]));
        }
        Item::IbanEvasion => {
            let country = rng.pick(IBAN_COUNTRIES);
            let iban = make_iban(rng, country, None);
            let (_, text) = iban_layout(rng, &iban);
            let (evasion, text) = if rng.chance(50) {
                ("zero-width", sprinkle(rng, &text))
            } else {
                ("fullwidth", map_digits(&text, 0xFF10))
            };
            b.push(rng.pick(IBAN_LEADS));
            b.label(Detector::Iban, format!("{evasion}/{}", country.code), &text);
        }
        Item::IbanBadCheck => {
            let country = rng.pick(IBAN_COUNTRIES);
            let offset = 1 + rng.below(95) as u32;
            let iban = make_iban(rng, country, Some(offset));
            let (_, text) = iban_layout(rng, &iban);
            b.push(rng.pick(IBAN_LEADS));
            b.lookalike("iban-bad-check", &text);
        }
        Item::AwsAccessKey => {
            let (lead, trail) = rng.pick(&[
                ("aws_access_key_id = ", ""),
                ("AWS_ACCESS_KEY_ID=", ""),
                ("access key ", ""),
                ("\"AccessKeyId\": \"", "\","),
                ("key id: ", ""),
                ("", " is the CI user's key"),
            ]);
            b.push(lead);
            let key = aws_access_key(rng);
            b.label(Detector::AwsAccessKey, "akia".into(), &key);
            b.push(trail);
        }
        Item::AwsSecretKey => {
            if rng.chance(40) {
                b.push("aws_access_key_id=");
                let key = aws_access_key(rng);
                b.label(Detector::AwsAccessKey, "akia with secret".into(), &key);
                b.push("\n");
            }
            let (lead, trail) = rng.pick(&[
                ("aws_secret_access_key=", ""),
                ("aws_secret_access_key = ", ""),
                ("AWS_SECRET_ACCESS_KEY=", ""),
                ("export AWS_SECRET_ACCESS_KEY=", ""),
                ("\"SecretAccessKey\": \"", "\""),
                ("aws_secret_access_key: ", ""),
            ]);
            b.push(lead);
            let secret = rng.string(BASE64, 40);
            b.label(Detector::AwsSecretKey, lead.trim().into(), &secret);
            b.push(trail);
        }
        Item::PrivateKey => {
            let kind = rng.pick(&[
                "RSA PRIVATE KEY",
                "EC PRIVATE KEY",
                "PRIVATE KEY",
                "OPENSSH PRIVATE KEY",
                "ENCRYPTED PRIVATE KEY",
            ]);
            let width = if kind == "OPENSSH PRIVATE KEY" {
                70
            } else {
                64
            };
            let n = rng.between(90, 1200) as usize;
            let block = pem_block(kind, &rng.bytes(n), width);
            let (lead, trail) = rng.pick(&[
                ("here's the deploy key:\n", ""),
                ("```\n", "\n```"),
                ("", ""),
                ("key for the bastion 👇\n", ""),
                ("voilà la clé :\n", "\n"),
            ]);
            b.push(lead);
            b.label(Detector::PrivateKey, kind.into(), &block);
            b.push(trail);
        }
        Item::GithubToken => {
            let (form, token) = match rng.below(10) {
                0..=5 => ("ghp", github_classic(rng, "ghp_")),
                6 => {
                    let prefix = rng.pick(&["gho_", "ghs_", "ghu_"]);
                    ("gho/ghs", github_classic(rng, prefix))
                }
                _ => {
                    let token = format!(
                        "github_pat_{}_{}",
                        rng.string(ALNUM, 22),
                        rng.string(ALNUM, 59)
                    );
                    ("github_pat", token)
                }
            };
            let (lead, trail) = rng.pick(&[
                ("token: ", ""),
                ("GITHUB_TOKEN=", ""),
                ("use this PAT ", ""),
                ("export GH_TOKEN=", ""),
                ("", " (expires in 30 days)"),
                (
                    "git clone https://x-access-token:",
                    "@github.com/acme/infra.git",
                ),
            ]);
            b.push(lead);
            b.label(Detector::GithubToken, form.into(), &token);
            b.push(trail);
        }
        Item::SlackToken => {
            let (form, token) = match rng.below(4) {
                0 | 1 => {
                    let a = rng.between(10, 13) as usize;
                    let c = rng.between(10, 13) as usize;
                    let token = format!(
                        "xoxb-{}-{}-{}",
                        digit_string(rng, a),
                        digit_string(rng, c),
                        rng.string(ALNUM, 24)
                    );
                    ("xoxb", token)
                }
                2 => {
                    let token = format!(
                        "xoxp-{}-{}-{}-{}",
                        digit_string(rng, 12),
                        digit_string(rng, 12),
                        digit_string(rng, 13),
                        rng.string(HEX, 32)
                    );
                    ("xoxp", token)
                }
                _ => {
                    let token = format!(
                        "https://hooks.slack.com/services/T{}/B{}/{}",
                        rng.string(ALNUM_UPPER, 10),
                        rng.string(ALNUM_UPPER, 10),
                        rng.string(ALNUM, 24)
                    );
                    ("webhook", token)
                }
            };
            b.push(rng.pick(&[
                "SLACK_BOT_TOKEN=",
                "slack token ",
                "",
                "webhook: ",
                "bot token → ",
            ]));
            b.label(Detector::SlackToken, form.into(), &token);
        }
        Item::StripeKey => {
            let prefix = rng.pick(&["sk_live_", "sk_live_", "rk_live_"]);
            let n = rng.pick(&[24usize, 24, 34, 99]);
            let key = format!("{prefix}{}", rng.string(ALNUM, n));
            let (lead, trail) = rng.pick(&[
                ("STRIPE_SECRET_KEY=", ""),
                ("stripe key ", ""),
                ("", ""),
                ("Stripe.api_key = '", "'"),
            ]);
            b.push(lead);
            b.label(
                Detector::StripeKey,
                prefix.trim_end_matches('_').into(),
                &key,
            );
            b.push(trail);
        }
        Item::GoogleApiKey => {
            let key = format!("AIza{}", rng.string(GOOGLE, 35));
            b.push(rng.pick(&[
                "GOOGLE_API_KEY=",
                "maps key ",
                "",
                "https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=",
            ]));
            b.label(Detector::GoogleApiKey, "aiza".into(), &key);
        }
        Item::Jwt => {
            let (alg, sig) = if rng.chance(70) {
                ("HS256", 32)
            } else {
                ("RS256", 256)
            };
            let header = format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}");
            let payload = format!(
                "{{\"sub\":\"{}\",\"name\":\"{} {}\",\"iat\":{},\"exp\":{}}}",
                rng.between(1, 9_999_999),
                rng.pick(FIRST_NAMES),
                rng.pick(LAST_NAMES),
                rng.between(1_600_000_000, 1_800_000_000),
                rng.between(1_800_000_000, 1_900_000_000),
            );
            let token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload),
                URL_SAFE_NO_PAD.encode(rng.bytes(sig))
            );
            let (lead, trail) = rng.pick(&[
                ("Authorization: Bearer ", ""),
                ("token=", ""),
                ("", ""),
                ("jwt: ", ""),
                ("Cookie: session=", "; Path=/; HttpOnly"),
            ]);
            b.push(lead);
            b.label(Detector::Jwt, alg.into(), &token);
            b.push(trail);
        }
        Item::Password => {
            let key = rng.pick(&[
                "password",
                "password",
                "PASSWORD",
                "db_password",
                "passwd",
                "pwd",
                "Password",
                "MYSQL_ROOT_PASSWORD",
                "admin_password",
                "smtp_password",
                "Passwort",
            ]);
            let sep = rng.pick(&["=", " = ", ": ", ":"]);
            let quote = if sep.contains('=') && rng.chance(30) {
                rng.pick(&["\"", "'"])
            } else {
                ""
            };
            b.push(key);
            b.push(sep);
            b.push(quote);
            let value = strong_password(rng);
            b.label(
                Detector::PasswordAssignment,
                format!("{key}{}", sep.trim()),
                &value,
            );
            b.push(quote);
            b.push(rng.pick(&["", "", " (rotate it after)", " — don't share"]));
        }
        Item::Email => {
            let first = rng.pick(FIRST_NAMES).to_lowercase();
            let last = rng.pick(LAST_NAMES).to_lowercase();
            let domain = rng.pick(DOMAINS);
            let address = match rng.below(3) {
                0 => format!("{first}.{last}@{domain}"),
                1 => format!("{first}{}@{domain}", rng.between(1, 99)),
                _ => format!("{}{last}@{domain}", &first[..1]),
            };
            let (lead, trail) = rng.pick(&[
                ("mail me at ", ""),
                ("email: ", ""),
                ("", ""),
                ("contact ", " for access"),
                ("cc ", ""),
                ("Schreib an ", ""),
                ("écris à ", ""),
                ("Jane <", ">"),
            ]);
            b.push(lead);
            b.label(Detector::Email, "address".into(), &address);
            b.push(trail);
        }
        Item::Phone => {
            let (form, number) = phone(rng);
            b.push(rng.pick(&[
                "call me at ",
                "phone: ",
                "tel. ",
                "my number is ",
                "ruf mich an: ",
                "WhatsApp ",
                "",
                "mobile ",
            ]));
            b.label(Detector::Phone, form.into(), &number);
        }
        Item::Order => {
            if rng.chance(30) {
                let mut digits = vec![4];
                digits.extend(rng.digits(14));
                digits.push(luhn_digit(&digits));
                b.push(rng.pick(&["order ", "order #", "Order number: ", "your order "]));
                b.lookalike("order-number-4xxx", &digit_text(&digits));
            } else {
                let n = rng.between(12, 19) as usize;
                let mut digits = vec![rng.pick(&[1u8, 7, 9])];
                digits.extend(rng.digits(n - 2));
                digits.push(luhn_digit(&digits));
                b.push(rng.pick(&[
                    "order #",
                    "Order number: ",
                    "Bestellnummer ",
                    "your order ",
                    "order no. ",
                    "n° de commande ",
                    "pedido #",
                ]));
                b.lookalike("order-number", &digit_text(&digits));
            }
            b.push(rng.pick(&[" has shipped 📦", "", " was cancelled", " — refund pending"]));
        }
        Item::Imei => {
            let mut digits = vec![];
            digits.extend(rng.pick(&[[3u8, 5], [8, 6], [0, 1], [9, 9], [3, 5]]));
            digits.extend(rng.digits(12));
            digits.push(luhn_digit(&digits));
            let text = digit_text(&digits);
            let text = if rng.chance(20) {
                format!(
                    "{}-{}-{}-{}",
                    &text[..2],
                    &text[2..8],
                    &text[8..14],
                    &text[14..]
                )
            } else {
                text
            };
            b.push(rng.pick(&["IMEI ", "IMEI: ", "imei ", "the phone's IMEI is "]));
            b.lookalike("imei", &text);
        }
        Item::Timestamp => {
            let ms = rng.between(1_500_000_000_000, 1_800_000_000_000);
            let (lead, trail) = rng.pick(&[
                ("ts=", ""),
                ("{\"created_at\": ", "}"),
                ("at ", " the job died"),
                ("epoch ms ", ""),
                ("last seen ", ""),
            ]);
            b.push(lead);
            b.lookalike("timestamp-ms", &ms.to_string());
            b.push(trail);
        }
        Item::Isbn => {
            let mut digits = vec![9, 7, rng.pick(&[8u8, 9])];
            digits.extend(rng.digits(9));
            let sum: u32 = digits
                .iter()
                .enumerate()
                .map(|(i, &d)| u32::from(d) * if i % 2 == 0 { 1 } else { 3 })
                .sum();
            digits.push(((10 - sum % 10) % 10) as u8);
            let text = digit_text(&digits);
            let text = if rng.chance(50) {
                format!(
                    "{}-{}-{}-{}-{}",
                    &text[..3],
                    &text[3..4],
                    &text[4..6],
                    &text[6..12],
                    &text[12..]
                )
            } else {
                text
            };
            let (lead, trail) =
                rng.pick(&[("ISBN ", ""), ("ISBN-13: ", ""), ("the book (ISBN ", ")")]);
            b.push(lead);
            b.lookalike("isbn-13", &text);
            b.push(trail);
        }
        Item::Uuid => {
            let h = rng.string(HEX, 32);
            let variant = rng.pick(&["8", "9", "a", "b"]);
            let uuid = format!(
                "{}-{}-4{}-{variant}{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..15],
                &h[15..18],
                &h[18..30]
            );
            b.push(rng.pick(&["request id ", "trace ", "", "id="]));
            b.lookalike("uuid", &uuid);
        }
        Item::GitSha => {
            b.push(rng.pick(&["commit ", "fixed in ", "reverted ", "git show "]));
            let n = if rng.chance(70) { 40 } else { 12 };
            b.lookalike("git-sha", &rng.string(HEX, n));
        }
        Item::Sha256 => {
            b.push(rng.pick(&["sha256:", "SHA256 ", "digest ", "checksum: "]));
            b.lookalike("sha256", &rng.string(HEX, 64));
        }
        Item::SshKey => {
            let mut blob = Vec::with_capacity(51);
            blob.extend([0, 0, 0, 11]);
            blob.extend(b"ssh-ed25519");
            blob.extend([0, 0, 0, 32]);
            blob.extend(rng.bytes(32));
            let user = rng.pick(FIRST_NAMES).to_lowercase();
            let key = format!("ssh-ed25519 {} {user}@laptop", STANDARD.encode(blob));
            b.push(rng.pick(&["my public key: ", "add this to authorized_keys: ", ""]));
            b.lookalike("ssh-public-key", &key);
        }
        Item::PublicKeyBlock => {
            let kind = rng.pick(&["PUBLIC KEY", "CERTIFICATE"]);
            let n = rng.between(90, 600) as usize;
            let block = pem_block(kind, &rng.bytes(n), 64);
            b.push(rng.pick(&["our public key:\n", "the cert is\n", ""]));
            b.lookalike("public-key-block", &block);
        }
        Item::AwsExample => {
            let key = match rng.below(3) {
                0 => "AKIAIOSFODNN7EXAMPLE".to_owned(),
                1 => "AKIAI44QH8DHBEXAMPLE".to_owned(),
                _ => format!("AKIA{}EXAMPLE", rng.string(BASE32, 9)),
            };
            b.push(rng.pick(&["aws_access_key_id = ", "e.g. ", "the docs use "]));
            b.lookalike("aws-doc-example", &key);
            if rng.chance(50) {
                b.push("\naws_secret_access_key = ");
                b.lookalike(
                    "aws-doc-example",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                );
            }
        }
        Item::PasswordPlaceholder => {
            let text = rng.pick(&[
                "password = ${DB_PASSWORD}",
                "password: ********",
                "password=<your-password>",
                "password: \"{{ vault_db_password }}\"",
                "password = os.environ[\"DB_PASSWORD\"]",
                "password: %(db_password)s",
                "password=$PGPASSWORD",
                "PASSWORD: REDACTED",
                "password = \"\"",
                "password: xxxxxxxx",
                "password=${{ secrets.DEPLOY_PASSWORD }}",
                "db_password: !vault |",
            ]);
            b.lookalike("password-placeholder", text);
        }
        Item::PasswordProse => {
            let text = rng.pick(&[
                "I forgot my password again 🙈",
                "the password reset link expired",
                "Passwort vergessen, kannst du es zurücksetzen?",
                "use a password manager please",
                "password policy requires 12 characters now",
                "mot de passe oublié 😅",
                "did you change the wifi password?",
                "the password is in 1Password, vault infra",
                "password: see the vault",
            ]);
            b.lookalike("password-prose", text);
        }
        Item::TokenPlaceholder => {
            let text = match rng.below(5) {
                0 => format!("ghp_{}", "x".repeat(36)),
                1 => format!("sk_live_{}", "x".repeat(24)),
                2 => "AKIAXXXXXXXXXXXXXXXX".to_owned(),
                3 => "xoxb-your-token-here".to_owned(),
                _ => format!("AIza{}", "X".repeat(35)),
            };
            b.push(rng.pick(&["replace ", "set it to something like ", "e.g. "]));
            b.lookalike("token-placeholder", &text);
        }
        Item::Date => {
            let (y, m, d) = (
                rng.between(2019, 2026),
                rng.between(1, 12),
                rng.between(1, 28),
            );
            let month = MONTHS[(m - 1) as usize];
            let text = match rng.below(5) {
                0 => format!("{y}-{m:02}-{d:02}"),
                1 => format!("{d:02}/{m:02}/{y}"),
                2 => format!("{d:02}.{m:02}.{y}"),
                3 => format!("{d} {month} {y}"),
                _ => format!("{y}年{m}月{d}日"),
            };
            b.push(rng.pick(&["due ", "on ", "bis ", "le ", "deadline "]));
            b.lookalike("date", &text);
        }
        Item::Amount => {
            let (a, c) = (rng.between(1, 99_999), rng.between(0, 99));
            let text = match rng.below(5) {
                0 => format!("${},{:03}.{c:02}", a / 1000 + 1, a % 1000),
                1 => format!("€ {}.{:03},{c:02}", a / 1000 + 1, a % 1000),
                2 => format!("USD {a}"),
                3 => format!("¥{},{:03}", a / 1000 + 1, a % 1000),
                _ => format!("{a},{c:02} €"),
            };
            b.push(rng.pick(&["total ", "that's ", "invoice total: ", "it costs "]));
            b.lookalike("amount", &text);
        }
        Item::Version => {
            let (x, y, z) = (rng.between(0, 30), rng.between(0, 40), rng.between(0, 200));
            let text = match rng.below(4) {
                0 => format!("v{x}.{y}.{z}"),
                1 => format!("rampart {x}.{y}.{z}"),
                2 => format!("Chrome {}.0.{}.{z}", 100 + x, 6000 + y),
                _ => format!("build {}.{z}", rng.between(20_190_101, 20_261_231)),
            };
            b.push(rng.pick(&["upgrade to ", "running ", "fixed in ", ""]));
            b.lookalike("version", &text);
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const FIRST_NAMES: &[&str] = &[
    "Jane", "Omar", "Lena", "Kenji", "Priya", "Lucas", "Sofia", "Mateo", "Anya", "Noah", "Amara",
    "Felix",
];

const LAST_NAMES: &[&str] = &[
    "Doe", "Haddad", "Schmidt", "Tanaka", "Patel", "Moreau", "Garcia", "Ivanova", "Okafor", "Berg",
];

const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "acme.test",
    "mail.example.de",
    "corp.example.net",
];

/// A card brand: IIN ranges (as digit strings, inclusive) and lengths.
#[derive(Clone, Copy)]
struct Brand {
    name: &'static str,
    ranges: &'static [(&'static str, &'static str)],
    lengths: &'static [usize],
}

const BRANDS: &[Brand] = &[
    Brand {
        name: "visa",
        ranges: &[("4", "4")],
        lengths: &[13, 16, 16, 16, 16, 19],
    },
    Brand {
        name: "visa",
        ranges: &[("4", "4")],
        lengths: &[16],
    },
    Brand {
        name: "mastercard",
        ranges: &[("51", "55"), ("2221", "2720")],
        lengths: &[16],
    },
    Brand {
        name: "mastercard",
        ranges: &[("51", "55")],
        lengths: &[16],
    },
    Brand {
        name: "amex",
        ranges: &[("34", "34"), ("37", "37")],
        lengths: &[15],
    },
    Brand {
        name: "discover",
        ranges: &[("6011", "6011"), ("644", "649"), ("65", "65")],
        lengths: &[16, 16, 16, 19],
    },
    Brand {
        name: "jcb",
        ranges: &[("3528", "3589")],
        lengths: &[16],
    },
    Brand {
        name: "diners",
        ranges: &[("300", "305"), ("36", "36"), ("38", "39")],
        lengths: &[14, 14, 16],
    },
    Brand {
        name: "unionpay",
        ranges: &[("620", "621"), ("623", "629")],
        lengths: &[16, 16, 17, 19],
    },
    Brand {
        name: "maestro",
        ranges: &[
            ("5018", "5018"),
            ("5020", "5020"),
            ("5038", "5038"),
            ("5893", "5893"),
            ("6304", "6304"),
            ("6759", "6759"),
            ("6761", "6763"),
        ],
        lengths: &[12, 13, 16, 16, 19],
    },
    Brand {
        name: "mir",
        ranges: &[("2200", "2204")],
        lengths: &[16],
    },
];

/// A random number of `brand` with a correct Luhn digit.
fn card_digits(rng: &mut Rng, brand: Brand) -> Vec<u8> {
    let (lo, hi) = rng.pick(brand.ranges);
    let len = rng.pick(brand.lengths);
    let value = |s: &str| {
        s.bytes()
            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'))
    };
    let prefix = rng.between(value(lo), value(hi));
    let mut digits: Vec<u8> = format!("{prefix:0width$}", width = lo.len())
        .bytes()
        .map(|b| b - b'0')
        .collect();
    while digits.len() < len - 1 {
        digits.push(rng.below(10) as u8);
    }
    digits.push(luhn_digit(&digits));
    digits
}

/// The digit that completes `payload` to pass the Luhn check.
fn luhn_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

fn digit_text(digits: &[u8]) -> String {
    digits.iter().map(|&d| char::from(b'0' + d)).collect()
}

fn digit_string(rng: &mut Rng, n: usize) -> String {
    let mut digits = rng.digits(n);
    if let Some(first) = digits.first_mut() {
        *first = 1 + *first % 9;
    }
    digit_text(&digits)
}

/// A card as people write it: unseparated, or in the printed groups with
/// spaces or dashes.
fn card_layout(rng: &mut Rng, digits: &[u8]) -> (&'static str, String) {
    let text = digit_text(digits);
    let (name, sep) = match rng.below(20) {
        0..=5 => return ("plain", text),
        6..=14 => ("spaced", ' '),
        _ => ("dashed", '-'),
    };
    let groups: &[usize] = match digits.len() {
        15 => &[4, 6, 5],
        14 => &[4, 6, 4],
        _ => &[4, 4, 4, 4, 4],
    };
    let mut out = String::with_capacity(text.len() + 5);
    let mut at = 0;
    for &g in groups {
        if at >= text.len() {
            break;
        }
        if at > 0 {
            out.push(sep);
        }
        let end = (at + g).min(text.len());
        out.push_str(&text[at..end]);
        at = end;
    }
    (name, out)
}

/// A valid (area, group, serial), none of the published sample numbers.
fn ssn_parts(rng: &mut Rng) -> (u64, u64, u64) {
    let mut area = rng.between(1, 898);
    if area >= 666 {
        area += 1;
    }
    let group = rng.between(1, 99);
    let mut serial = rng.between(1, 9999);
    let text = format!("{area:03}{group:02}{serial:04}");
    let same = text.bytes().all(|b| Some(b) == text.bytes().next());
    if same || ["078051120", "219099999", "123456789"].contains(&text.as_str()) {
        serial = serial % 9999 + 1;
    }
    (area, group, serial)
}

/// One of the evasions, applied to a number written with ASCII digits and
/// `-` or ` ` separators.
fn evade(rng: &mut Rng, text: &str) -> (&'static str, String) {
    match rng.below(6) {
        0 | 1 => ("zero-width", sprinkle(rng, text)),
        2 => ("fullwidth", map_digits(text, 0xFF10)),
        3 => ("arabic-indic", map_digits(text, 0x0660)),
        4 => {
            let dash = rng.pick(&['\u{2010}', '\u{2013}', '\u{2212}']);
            ("unicode-dash", regroup(text, dash))
        }
        _ => {
            let space = rng.pick(&['\u{00A0}', '\u{202F}']);
            ("no-break-space", regroup(text, space))
        }
    }
}

/// `text` with its separators replaced by `sep` (grouped in fours first if
/// it had none).
fn regroup(text: &str, sep: char) -> String {
    if text.contains([' ', '-']) {
        return text.replace([' ', '-'], &sep.to_string());
    }
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// ASCII digits moved to the script whose zero is `zero`.
fn map_digits(text: &str, zero: u32) -> String {
    text.chars()
        .map(|c| match c.to_digit(10) {
            Some(d) if c.is_ascii_digit() => char::from_u32(zero + d).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// One to three zero-width characters inserted between alphanumerics.
fn sprinkle(rng: &mut Rng, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let between: Vec<usize> = (1..chars.len())
        .filter(|&i| chars[i - 1].is_ascii_alphanumeric() && chars[i].is_ascii_alphanumeric())
        .collect();
    let mut at = Vec::new();
    if !between.is_empty() {
        for _ in 0..rng.between(1, 3) {
            at.push(rng.pick(&between));
        }
    }
    let mut out = String::with_capacity(text.len() + 9);
    for (i, &c) in chars.iter().enumerate() {
        for _ in at.iter().filter(|&&a| a == i) {
            out.push(rng.pick(&['\u{200B}', '\u{200D}', '\u{2060}']));
        }
        out.push(c);
    }
    out
}

/// A country's IBAN format: the BBAN as (count, class) with `n` digits,
/// `a` upper-case letters, `c` letters or digits.
#[derive(Clone, Copy)]
struct IbanCountry {
    code: &'static str,
    bban: &'static [(usize, u8)],
}

const IBAN_COUNTRIES: &[IbanCountry] = &[
    IbanCountry {
        code: "DE",
        bban: &[(18, b'n')],
    },
    IbanCountry {
        code: "DE",
        bban: &[(18, b'n')],
    },
    IbanCountry {
        code: "GB",
        bban: &[(4, b'a'), (14, b'n')],
    },
    IbanCountry {
        code: "FR",
        bban: &[(10, b'n'), (11, b'c'), (2, b'n')],
    },
    IbanCountry {
        code: "ES",
        bban: &[(20, b'n')],
    },
    IbanCountry {
        code: "IT",
        bban: &[(1, b'a'), (10, b'n'), (12, b'c')],
    },
    IbanCountry {
        code: "NL",
        bban: &[(4, b'a'), (10, b'n')],
    },
    IbanCountry {
        code: "BE",
        bban: &[(12, b'n')],
    },
    IbanCountry {
        code: "CH",
        bban: &[(5, b'n'), (12, b'c')],
    },
    IbanCountry {
        code: "AT",
        bban: &[(16, b'n')],
    },
    IbanCountry {
        code: "PL",
        bban: &[(24, b'n')],
    },
    IbanCountry {
        code: "SE",
        bban: &[(20, b'n')],
    },
    IbanCountry {
        code: "NO",
        bban: &[(11, b'n')],
    },
    IbanCountry {
        code: "DK",
        bban: &[(14, b'n')],
    },
    IbanCountry {
        code: "FI",
        bban: &[(14, b'n')],
    },
    IbanCountry {
        code: "IE",
        bban: &[(4, b'a'), (14, b'n')],
    },
    IbanCountry {
        code: "PT",
        bban: &[(21, b'n')],
    },
    IbanCountry {
        code: "LU",
        bban: &[(3, b'n'), (13, b'c')],
    },
    IbanCountry {
        code: "CZ",
        bban: &[(20, b'n')],
    },
    IbanCountry {
        code: "GR",
        bban: &[(7, b'n'), (16, b'c')],
    },
    IbanCountry {
        code: "TR",
        bban: &[(5, b'n'), (17, b'c')],
    },
    IbanCountry {
        code: "SA",
        bban: &[(2, b'n'), (18, b'c')],
    },
    IbanCountry {
        code: "AE",
        bban: &[(19, b'n')],
    },
    IbanCountry {
        code: "BR",
        bban: &[(23, b'n'), (1, b'a'), (1, b'c')],
    },
    IbanCountry {
        code: "MT",
        bban: &[(4, b'a'), (5, b'n'), (18, b'c')],
    },
    IbanCountry {
        code: "HU",
        bban: &[(24, b'n')],
    },
    IbanCountry {
        code: "RO",
        bban: &[(4, b'a'), (16, b'c')],
    },
    IbanCountry {
        code: "HR",
        bban: &[(17, b'n')],
    },
    IbanCountry {
        code: "UA",
        bban: &[(6, b'n'), (19, b'c')],
    },
    IbanCountry {
        code: "IL",
        bban: &[(19, b'n')],
    },
    IbanCountry {
        code: "KZ",
        bban: &[(3, b'n'), (13, b'c')],
    },
];

const IBAN_LEADS: &[&str] = &[
    "",
    "",
    "IBAN ",
    "IBAN: ",
    "IBAN:",
    "Konto: ",
    "please transfer to ",
    "bank account ",
    "RIB/IBAN : ",
    "cuenta ",
    "口座 ",
];

/// A random IBAN of `country`, upper case, unseparated. With
/// `wrong = Some(k)` the check digits are off by `k` (1..=95) modulo 97.
fn make_iban(rng: &mut Rng, country: IbanCountry, wrong: Option<u32>) -> String {
    let mut bban = String::new();
    for &(n, class) in country.bban {
        let alphabet = match class {
            b'n' => DIGITS,
            b'a' => UPPER,
            _ => ALNUM_UPPER,
        };
        bban.push_str(&rng.string(alphabet, n));
    }
    let mut rem = 0u32;
    for c in bban.bytes().chain(country.code.bytes()).chain(*b"00") {
        rem = if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A' + 10)) % 97
        };
    }
    let mut check = 98 - rem;
    if let Some(k) = wrong {
        check = 2 + (check - 2 + k) % 97;
    }
    format!("{}{check:02}{bban}", country.code)
}

/// Grouped in fours or not, sometimes lower case.
fn iban_layout(rng: &mut Rng, iban: &str) -> (&'static str, String) {
    let grouped = rng.chance(50);
    let mut text = if grouped {
        let mut out = String::with_capacity(iban.len() + 9);
        for (i, c) in iban.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    } else {
        iban.to_owned()
    };
    let lower = rng.chance(15);
    if lower {
        text = text.to_lowercase();
    }
    let name = match (grouped, lower) {
        (true, false) => "grouped",
        (false, false) => "plain",
        (true, true) => "grouped lower",
        (false, true) => "plain lower",
    };
    (name, text)
}

fn aws_access_key(rng: &mut Rng) -> String {
    let prefix = if rng.chance(85) { "AKIA" } else { "ASIA" };
    format!("{prefix}{}", rng.string(BASE32, 16))
}

/// `ghp_`-style: 30 random characters and the base62 CRC-32 of them, as
/// GitHub issues them.
fn github_classic(rng: &mut Rng, prefix: &str) -> String {
    let body = rng.string(ALNUM, 30);
    let mut crc = crc32(body.as_bytes());
    let mut check = [b'0'; 6];
    for slot in check.iter_mut().rev() {
        *slot = ALNUM[(crc % 62) as usize];
        crc /= 62;
    }
    format!("{prefix}{body}{}", String::from_utf8_lossy(&check))
}

/// CRC-32 (IEEE), bit by bit: the corpus needs a few thousand.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn pem_block(kind: &str, body: &[u8], width: usize) -> String {
    let b64 = STANDARD.encode(body);
    let mut out = format!("-----BEGIN {kind}-----\n");
    for chunk in b64.as_bytes().chunks(width) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {kind}-----"));
    out
}

/// Twelve to twenty-four characters, at least one of each class.
fn strong_password(rng: &mut Rng) -> String {
    let n = rng.between(12, 24) as usize;
    let mut chars: Vec<u8> = vec![
        rng.pick(LOWER),
        rng.pick(UPPER),
        rng.pick(DIGITS),
        rng.pick(SYMBOLS),
    ];
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    while chars.len() < n {
        chars.push(rng.pick(&all));
    }
    for i in (1..chars.len()).rev() {
        chars.swap(i, rng.below(i + 1));
    }
    chars.into_iter().map(char::from).collect()
}

fn phone(rng: &mut Rng) -> (&'static str, String) {
    let d = |rng: &mut Rng, n: usize| digit_text(&rng.digits(n));
    match rng.below(8) {
        0 => ("us +1 555", format!("+1 555 {} {}", d(rng, 3), d(rng, 4))),
        1 => ("us (555)", format!("+1 (555) {}-{}", d(rng, 3), d(rng, 4))),
        2 => ("us 555-", format!("555-{}-{}", d(rng, 3), d(rng, 4))),
        3 => {
            let n = rng.between(7, 8) as usize;
            ("de (030)", format!("(030) {}", digit_string(rng, n)))
        }
        4 => ("de +49", format!("+49 30 {}", digit_string(rng, 8))),
        5 => ("uk +44", format!("+44 20 7946 0{}", d(rng, 3))),
        6 => (
            "fr +33",
            format!(
                "+33 6 {} {} {} {}",
                d(rng, 2),
                d(rng, 2),
                d(rng, 2),
                d(rng, 2)
            ),
        ),
        _ => ("jp +81", format!("+81 90-{}-{}", d(rng, 4), d(rng, 4))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Normalized;

    fn luhn(digits: &[u8]) -> bool {
        let (payload, check) = digits.split_at(digits.len() - 1);
        luhn_digit(payload) == check[0]
    }

    #[test]
    fn same_seed_same_corpus_and_prefixes_agree() {
        let a = generate(42, 300);
        assert_eq!(a, generate(42, 300));
        assert_eq!(a[..100], generate(42, 100)[..]);
        assert_ne!(a, generate(43, 300));
    }

    #[test]
    fn spans_are_in_bounds_on_char_boundaries_and_disjoint() {
        for s in generate(1, 3000) {
            let mut spans: Vec<Range<usize>> = s.labels.iter().map(|l| l.span.clone()).collect();
            spans.extend(s.lookalikes.iter().map(|l| l.span.clone()));
            spans.sort_by_key(|r| r.start);
            for r in &spans {
                assert!(
                    r.start < r.end && s.text.get(r.clone()).is_some(),
                    "{:?}",
                    s.text
                );
            }
            for w in spans.windows(2) {
                assert!(w[0].end <= w[1].start, "{:?}", s.text);
            }
        }
    }

    #[test]
    fn every_detector_has_support() {
        let corpus = generate(1, 5000);
        for d in Detector::ALL {
            let n = corpus
                .iter()
                .flat_map(|s| &s.labels)
                .filter(|l| l.detector == d)
                .count();
            assert!(n >= 40, "{d}: {n}");
        }
    }

    #[test]
    fn labelled_numbers_are_valid_and_lookalikes_are_not() {
        let digits_of = |text: &str| -> Vec<u8> {
            Normalized::new(text)
                .text()
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(|b| b - b'0')
                .collect()
        };
        for s in generate(9, 5000) {
            for l in &s.labels {
                let text = &s.text[l.span.clone()];
                match l.detector {
                    Detector::Card => {
                        let d = digits_of(text);
                        assert!((12..=19).contains(&d.len()) && luhn(&d), "{text}");
                    }
                    Detector::Ssn | Detector::Itin => assert_eq!(digits_of(text).len(), 9),
                    Detector::Iban => {
                        let norm = Normalized::new(text).text().replace(' ', "").to_uppercase();
                        let mut rem = 0u32;
                        for c in norm[4..].bytes().chain(norm[..4].bytes()) {
                            rem = if c.is_ascii_digit() {
                                (rem * 10 + u32::from(c - b'0')) % 97
                            } else {
                                (rem * 100 + u32::from(c - b'A' + 10)) % 97
                            };
                        }
                        assert_eq!(rem, 1, "{text}");
                    }
                    _ => {}
                }
            }
            for l in &s.lookalikes {
                let text = &s.text[l.span.clone()];
                match l.kind {
                    "luhn-fail" => assert!(!luhn(&digits_of(text)), "{text}"),
                    "order-number" | "order-number-4xxx" | "imei" => {
                        assert!(luhn(&digits_of(text)), "{text}")
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn github_checksum_matches_a_known_token_shape() {
        // CRC-32 of "123456789" is the standard check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let token = github_classic(&mut Rng(5), "ghp_");
        assert_eq!(token.len(), 40);
        assert!(token.starts_with("ghp_"));
    }

    #[test]
    fn jwt_parts_decode_to_json() {
        let corpus = generate(3, 3000);
        let jwt = corpus
            .iter()
            .flat_map(|s| s.labels.iter().map(move |l| (s, l)))
            .find(|(_, l)| l.detector == Detector::Jwt);
        let Some((s, l)) = jwt else {
            panic!("no JWT in 3000 lines");
        };
        let token = &s.text[l.span.clone()];
        let header = token.split('.').next().unwrap_or_default();
        let header = URL_SAFE_NO_PAD.decode(header).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(header["typ"], "JWT");
    }
}
