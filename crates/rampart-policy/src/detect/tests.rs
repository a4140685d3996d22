//! Scanner tests: normalisation, exclusions between types, custom rules.

use super::*;
use crate::document::Policy;

fn rules(found: &[Finding], text: &str) -> Vec<(String, String)> {
    found
        .iter()
        .map(|f| (f.rule.id(), text[f.span.clone()].to_owned()))
        .collect()
}

#[test]
fn evasions_are_seen_through_and_spans_cover_the_original() {
    let scanner = Scanner::all_builtin();
    let text = "card ４１１１ １１１１ １１１１ １１１１ thanks";
    let found = scanner.scan(text);
    assert_eq!(
        rules(&found, text),
        vec![("card".into(), "４１１１ １１１１ １１１１ １１１１".into())]
    );
    let text = "ssn 536\u{200B}-22-\u{200D}8172";
    let found = scanner.scan(text);
    assert_eq!(
        rules(&found, text),
        vec![("ssn".into(), "536\u{200B}-22-\u{200D}8172".into())]
    );
    let text = "٤١١١١١١١١١١١١١١١ is my visa";
    assert_eq!(scanner.scan(text).len(), 1);
}

#[test]
fn digits_inside_an_iban_are_not_a_card() {
    let scanner = Scanner::all_builtin();
    let text = "IBAN GB33BUKB20201555555555 ok";
    let found = scanner.scan(text);
    assert_eq!(
        rules(&found, text),
        vec![("iban".into(), "GB33BUKB20201555555555".into())]
    );
}

#[test]
fn custom_keywords_and_regexes() {
    let policy = Policy::parse(
        r#"
version = 1
[[custom]]
id = "falcon"
keywords = ["Project Falcon"]
action = "block"
[[custom]]
id = "emp"
regex = 'EMP-[0-9]{6}'
action = "warn"
"#,
    )
    .unwrap();
    let scanner = Scanner::new(&policy.dlp).unwrap();
    let text = "re project falcon: EMP-123456 and projectfalconx";
    let found = scanner.scan(text);
    assert_eq!(
        rules(&found, text),
        vec![
            ("custom.falcon".into(), "project falcon".into()),
            ("custom.emp".into(), "EMP-123456".into()),
        ]
    );
}

#[test]
fn detectors_that_are_off_find_nothing() {
    let policy = Policy::parse("version = 1\n[detectors.card]\naction = \"off\"\n").unwrap();
    let scanner = Scanner::new(&policy.dlp).unwrap();
    assert!(scanner.scan("4111 1111 1111 1111").is_empty());
}

#[test]
fn huge_and_binary_input_completes() {
    let scanner = Scanner::all_builtin();
    let junk: String = (0..200_000u32)
        .map(|i| char::from_u32((i.wrapping_mul(2_654_435_761) >> 7) % 0x2_0000).unwrap_or('x'))
        .collect();
    let _ = scanner.scan(&junk);
    let digits = "4".repeat(1 << 20);
    assert!(scanner.scan(&digits).is_empty());
    let spaced = "4111 ".repeat(200_000);
    let _ = scanner.scan(&spaced);
}

#[test]
fn passwords_in_other_languages_and_short_strong_ones() {
    let scanner = Scanner::all_builtin();
    for (text, value) in [
        ("Passwort: Xk9#mQ2$vL7!pR", "Xk9#mQ2$vL7!pR"),
        ("mot de passe = Qz7!rT2#w", "Qz7!rT2#w"),
        ("пароль: Hx8$kd2Lq!", "Hx8$kd2Lq!"),
        ("admin_password: n665%RqqK~Kn", "n665%RqqK~Kn"),
    ] {
        let found = scanner.scan(text);
        assert_eq!(
            rules(&found, text),
            vec![("password_assignment".into(), value.into())],
            "{text}"
        );
    }
}
