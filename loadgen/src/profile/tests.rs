//! Profiles as users write them, good and bad: every refusal names its place.
use super::*;

const GOOD: &str = "
target:
  spawn: { gateways: 2, timeline: timeline.yaml }
users: 100
stages:
  - { duration: 5s, target: 100 }
  - { duration: 10s, target: 100 }
behaviour:
  shake_rate: 0.5
  open_probability: 0.5
thresholds:
  - 'shake: p99 < 50ms'
  - 'errors: rate < 0.1%'
";

#[test]
fn a_good_profile_parses() {
    let p = Profile::parse(GOOD).unwrap();
    assert_eq!(p.duration(), Duration::from_secs(15));
    assert_eq!(p.thresholds.len(), 2);
    assert_eq!(p.behaviour.shake_rate, 0.5);
}

fn err(text: &str) -> String {
    Profile::parse(text).unwrap_err()
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let e = err(&GOOD.replace(
        "open_probability: 0.5",
        "open_probability: 0.5\n  colour: red",
    ));
    assert!(e.contains("colour") && e.contains("line 11"), "{e}");
}

#[test]
fn negative_values_are_refused_with_their_line() {
    let e = err(&GOOD.replace("users: 100", "users: -5"));
    assert!(e.contains("line 4"), "{e}");
    let e = err(&GOOD.replace("open_probability: 0.5", "open_probability: -0.5"));
    // Custom checks are located at the enclosing block (behaviour: line 9) and name the field.
    assert!(
        e.contains("open_probability") && e.contains("line 9"),
        "{e}"
    );
    let e = err(&GOOD.replace("shake_rate: 0.5", "shake_rate: -2"));
    assert!(e.contains("shake_rate") && e.contains("line 9"), "{e}");
}

#[test]
fn missing_target_is_named() {
    let e = err(&GOOD.replace(
        "target:\n  spawn: { gateways: 2, timeline: timeline.yaml }\n",
        "",
    ));
    assert!(e.contains("missing field `target`"), "{e}");
}

#[test]
fn threshold_on_unknown_op_is_refused_with_its_line() {
    let e = err(&GOOD.replace("shake: p99", "shook: p99"));
    assert!(e.contains("shook") && e.contains("line 12"), "{e}");
}

#[test]
fn a_bad_threshold_is_placed_at_its_own_item() {
    // The second item is wrong; the first begins with the same words.
    let text = GOOD.replace(
        "  - 'errors: rate < 0.1%'",
        "  - 'errors: rate < 0.1%'\n  - 'shake: p99 < 50'",
    );
    let e = err(&text);
    assert!(
        e.contains("`50` is not a duration") && e.contains("at line 14 column 3"),
        "{e}"
    );
    let full = GOOD.replace(
        "  - 'errors: rate < 0.1%'",
        "  - 'errors: rate < 0.1%'\n  - { threshold: 'open: p42 < 1', abort_on_fail: true }",
    );
    let e = err(&full);
    assert!(e.contains("at line 14 column 3"), "{e}");
}

#[test]
fn wrong_values_are_told_in_the_profiles_words() {
    let base = "target: { addresses: { gateways: [a:1], auth_key_file: k } }\nbehaviour: { shake_rate: 1, open_probability: 1 }\n";
    let e = Profile::parse(&format!(
        "{base}users: -5\nstages: [{{ duration: 5s, target: 1 }}]"
    ))
    .unwrap_err();
    assert!(e.contains("expected a whole number of at least 0"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    let e = Profile::parse(&format!(
        "{base}users: 5\nstages: [{{ duration: 48, target: 1 }}]"
    ))
    .unwrap_err();
    assert!(e.contains("add a unit, e.g. 48s"), "{e}");
}

#[test]
fn committed_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/profile.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == Profile::json_schema(),
        "{} is stale: run `loadgen schema > profiles/profile.schema.json`",
        path.display()
    );
}

#[test]
fn adversarial_users_are_a_seeded_share() {
    let n = (0..100_000u64)
        .filter(|u| is_adversarial(*u, 7, 0.1))
        .count();
    assert!((9_500..10_500).contains(&n), "{n}");
    assert_eq!(
        (0..1000u64)
            .filter(|u| is_adversarial(*u, 7, 0.1))
            .collect::<Vec<_>>(),
        (0..1000u64)
            .filter(|u| is_adversarial(*u, 7, 0.1))
            .collect::<Vec<_>>()
    );
    assert!(!(0..1000u64).any(|u| is_adversarial(u, 7, 0.0)));
    let e = err(&GOOD.replace(
        "open_probability: 0.5",
        "open_probability: 0.5\n  adversarial: 2",
    ));
    assert!(e.contains("adversarial") && e.contains("[0, 1]"), "{e}");
}

#[test]
fn stage_above_users_is_refused() {
    let e = err(&GOOD.replace(
        "target: 100 }\n  - { duration: 10s",
        "target: 200 }\n  - { duration: 10s",
    ));
    assert!(e.contains("stages[0].target"), "{e}");
}
