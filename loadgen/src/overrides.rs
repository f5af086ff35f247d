//! Changing a profile from the command line, as k6 users expect: `${VAR}` and
//! `${VAR:-default}` in the profile's text, filled from `-e KEY=VALUE` and then the
//! environment (`$${` writes a literal `${`); and `--users`, `--duration`, `--stage`,
//! `--seed` over what the YAML says. The result is the effective profile: the run, its
//! workers and its agents all read the same text, and the summary lists what changed.

use serde_yaml::Value;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `users`, with every stage's target scaled by the same factor.
    pub users: Option<u64>,
    /// The whole run's length: every stage scaled to fit.
    pub duration: Option<Duration>,
    /// Stages replacing the profile's: `DURATION:TARGET`, e.g. `30s:1000`.
    pub stages: Vec<String>,
    pub seed: Option<u64>,
    /// `-e KEY=VALUE`: variables for `${KEY}`, before the environment.
    pub vars: Vec<(String, String)>,
}

/// The profile as this run will use it.
#[derive(Debug, Clone)]
pub struct Effective {
    pub text: String,
    /// Whether the text differs from the file's.
    pub changed: bool,
    /// What was changed, for the summary: `users 600 (was 3000)`, `${USERS}=600 (-e)`.
    pub notes: Vec<String>,
}

impl Effective {
    /// The profile to run: the file at `path` as it is, or this text when the command
    /// line changed it.
    pub fn profile(&self, path: &Path) -> Result<crate::profile::Profile, String> {
        if self.changed {
            crate::profile::Profile::parse(&self.text).map_err(|e| {
                format!(
                    "profile {} with the command line's changes: {e}",
                    path.display()
                )
            })
        } else {
            crate::profile::Profile::load(path).map_err(|e| e.to_string())
        }
    }
}

/// Parses `KEY=VALUE` (for `-e`).
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: write KEY=VALUE, e.g. -e USERS=1000"))?;
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`{k}`: a variable's name is letters, digits and underscores"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Fills `${VAR}` and `${VAR:-default}` from `lookup`; returns the text and a note per
/// variable used. An unset variable without a default is an error naming its line.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<(String, &'static str)>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(text.len());
    let mut notes = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let line = text[..text.len() - tail.len()].matches('\n').count() + 1;
        let end = body
            .find('}')
            .ok_or_else(|| format!("line {line}: `${{` without its closing `}}`"))?;
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "line {line}: `${{{inner}}}` is not a variable; write ${{NAME}} or ${{NAME:-default}}"
            ));
        }
        let value = match (lookup(name), default) {
            (Some((v, from)), _) => {
                notes.push(format!("${{{name}}}={v} ({from})"));
                v
            }
            (None, Some(d)) => {
                notes.push(format!("${{{name}}}={d} (default)"));
                d.to_string()
            }
            (None, None) => {
                return Err(format!(
                    "line {line}: ${{{name}}} is not set: give -e {name}=VALUE, set it in the environment, or write ${{{name}:-DEFAULT}}"
                ))
            }
        };
        out.push_str(&value);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok((out, notes))
}

/// The effective profile of the file at `path` under `o`, variables looked up in `-e`
/// first and then `env`.
pub fn apply(
    path: &Path,
    o: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Effective, String> {
    let original = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read profile {}: {e}", path.display()))?;
    let lookup = |name: &str| -> Option<(String, &'static str)> {
        o.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| (v.clone(), "-e"))
            .or_else(|| env(name).map(|v| (v, "environment")))
    };
    let (text, mut notes) =
        interpolate(&original, &lookup).map_err(|e| format!("profile {}: {e}", path.display()))?;
    let structural =
        o.users.is_some() || o.duration.is_some() || !o.stages.is_empty() || o.seed.is_some();
    if !structural && text == original {
        return Ok(Effective {
            text,
            changed: false,
            notes,
        });
    }
    if !structural {
        // Checked as filled in, so that a mistake is reported at its line in the file
        // (the text written out below is laid out anew).
        crate::profile::Profile::parse(&text)
            .map_err(|e| format!("profile {}: {e}", path.display()))?;
    }
    let mut doc: Value =
        serde_yaml::from_str(&text).map_err(|e| format!("profile {}: {e}", path.display()))?;
    let map = doc
        .as_mapping_mut()
        .ok_or_else(|| format!("profile {}: not a mapping of fields", path.display()))?;
    reshape(map, o, &mut notes)?;
    pin_paths(map, path);
    let text = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(Effective {
        text,
        changed: true,
        notes,
    })
}

/// Applies `--users`, `--stage`, `--duration` and `--seed` to the profile's fields.
fn reshape(
    map: &mut serde_yaml::Mapping,
    o: &Overrides,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    if !o.stages.is_empty() {
        let stages = o
            .stages
            .iter()
            .map(|s| parse_stage(s))
            .collect::<Result<Vec<_>, _>>()?;
        map.insert("stages".into(), Value::Sequence(stages));
        notes.push(format!("stages {}", o.stages.join(", ")));
    }
    if let Some(users) = o.users {
        let old = map.get("users").and_then(Value::as_u64).unwrap_or(users);
        map.insert("users".into(), users.into());
        if o.stages.is_empty() && old > 0 {
            for stage in stages_mut(map) {
                if let Some(t) = stage.get("target").and_then(Value::as_u64) {
                    let scaled = (t as f64 * users as f64 / old as f64).round() as u64;
                    stage.insert("target".into(), scaled.min(users).into());
                }
            }
        }
        notes.push(format!("users {users} (was {old}; stage targets scaled)"));
    }
    if let Some(total) = o.duration {
        let lengths: Vec<Duration> = stages_mut(map)
            .iter()
            .map(|s| {
                s.get("duration")
                    .and_then(Value::as_str)
                    .and_then(|d| humantime::parse_duration(d).ok())
                    .unwrap_or_default()
            })
            .collect();
        let old: Duration = lengths.iter().sum();
        if old.is_zero() {
            return Err("--duration: the profile's stages have no length to scale".into());
        }
        let factor = total.as_secs_f64() / old.as_secs_f64();
        for (stage, length) in stages_mut(map).into_iter().zip(lengths) {
            let ms = (length.as_secs_f64() * factor * 1000.0).round() as u64;
            let scaled = humantime::format_duration(Duration::from_millis(ms.max(1))).to_string();
            stage.insert("duration".into(), scaled.into());
        }
        notes.push(format!(
            "duration {} (was {}; every stage scaled)",
            humantime::format_duration(total),
            humantime::format_duration(old)
        ));
    }
    if let Some(seed) = o.seed {
        let old = map.get("seed").and_then(Value::as_u64).unwrap_or(1);
        map.insert("seed".into(), seed.into());
        notes.push(format!("seed {seed} (was {old})"));
    }
    Ok(())
}

fn stages_mut(map: &mut serde_yaml::Mapping) -> Vec<&mut serde_yaml::Mapping> {
    map.get_mut("stages")
        .and_then(Value::as_sequence_mut)
        .map(|s| s.iter_mut().filter_map(Value::as_mapping_mut).collect())
        .unwrap_or_default()
}

/// `DURATION:TARGET` as a stage.
fn parse_stage(s: &str) -> Result<Value, String> {
    let (d, t) = s
        .split_once(':')
        .ok_or_else(|| format!("--stage `{s}`: write DURATION:TARGET, e.g. 30s:1000"))?;
    humantime::parse_duration(d.trim())
        .map_err(|_| format!("--stage `{s}`: `{d}` is not a duration; add a unit, e.g. 30s"))?;
    let target: u64 = t
        .trim()
        .parse()
        .map_err(|_| format!("--stage `{s}`: `{t}` is not a whole number of users"))?;
    let mut m = serde_yaml::Mapping::new();
    m.insert("duration".into(), d.trim().into());
    m.insert("target".into(), target.into());
    Ok(Value::Mapping(m))
}

/// A changed profile is written and read elsewhere (the report directory): its name
/// and the timeline (relative to the original file) are made explicit.
fn pin_paths(map: &mut serde_yaml::Mapping, path: &Path) {
    if !map.contains_key("name") {
        if let Some(stem) = path.file_stem() {
            map.insert("name".into(), stem.to_string_lossy().into_owned().into());
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let spawn = map
        .get_mut("target")
        .and_then(|t| t.get_mut("spawn"))
        .and_then(Value::as_mapping_mut);
    if let Some(spawn) = spawn {
        if let Some(t) = spawn.get("timeline").and_then(Value::as_str) {
            let pinned = base.join(t).display().to_string();
            spawn.insert("timeline".into(), pinned.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<(String, &'static str)> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (v.to_string(), "environment"))
        }
    }

    #[test]
    fn variables_fill_in_with_defaults_and_escapes() {
        let (t, notes) = interpolate(
            "users: ${USERS}\nseed: ${SEED:-7}\nname: cost$5 $${KEEP}",
            &env(&[("USERS", "600")]),
        )
        .unwrap();
        assert_eq!(t, "users: 600\nseed: 7\nname: cost$5 ${KEEP}");
        assert_eq!(notes, ["${USERS}=600 (environment)", "${SEED}=7 (default)"]);
    }

    #[test]
    fn an_unset_variable_names_its_line_and_the_fix() {
        let e = interpolate("users: 1\nseed: ${SEED}\n", &env(&[])).unwrap_err();
        assert!(e.starts_with("line 2: ${SEED} is not set"), "{e}");
        assert!(e.contains("-e SEED=VALUE"), "{e}");
        let e = interpolate("a: ${no good}", &env(&[])).unwrap_err();
        assert!(e.contains("is not a variable"), "{e}");
        assert!(interpolate("a: ${OPEN", &env(&[]))
            .unwrap_err()
            .contains("closing"));
    }

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const PROFILE: &str = "
target: { spawn: { timeline: timeline.yaml } }
users: 3000
stages:
  - { duration: 5s, target: 3000 }
  - { duration: 15s, target: 1500 }
behaviour: { shake_rate: ${RATE:-0.5}, open_probability: 0.5 }
";

    #[test]
    fn users_duration_and_seed_reshape_the_profile() {
        let (dir, path) = write(PROFILE);
        let o = Overrides {
            users: Some(600),
            duration: Some(Duration::from_secs(40)),
            seed: Some(9),
            vars: vec![("RATE".into(), "2".into())],
            ..Overrides::default()
        };
        let e = apply(&path, &o, &|_| None).unwrap();
        let p = crate::profile::Profile::parse(&e.text).unwrap();
        assert_eq!(p.users, 600);
        let stages: Vec<(u64, u64)> = p
            .stages
            .iter()
            .map(|s| (s.duration.as_secs(), s.target))
            .collect();
        assert_eq!(stages, [(10, 600), (30, 300)]);
        assert_eq!(p.seed, 9);
        assert_eq!(p.behaviour.shake_rate, 2.0);
        assert_eq!(p.name.as_deref(), Some("p"));
        let crate::profile::Target::Spawn(s) = &p.target else {
            panic!()
        };
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(s.timeline, base.join("timeline.yaml"));
        assert!(e.notes.iter().any(|n| n.starts_with("users 600 (was 3000")));
        assert!(e.notes.iter().any(|n| n == "${RATE}=2 (-e)"));
    }

    #[test]
    fn a_profile_changed_by_variables_alone_keeps_its_name_and_timeline() {
        let (dir, path) = write(PROFILE);
        let o = Overrides {
            vars: vec![("RATE".into(), "3".into())],
            ..Overrides::default()
        };
        let e = apply(&path, &o, &|_| None).unwrap();
        assert!(e.changed);
        let p = crate::profile::Profile::parse(&e.text).unwrap();
        assert_eq!(p.behaviour.shake_rate, 3.0);
        assert_eq!(p.name.as_deref(), Some("p"));
        let crate::profile::Target::Spawn(s) = &p.target else {
            panic!()
        };
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(s.timeline, base.join("timeline.yaml"));
        // A mistake in the file is reported at its own line.
        let (_d, bad) = write("users: ${U:-x}\n");
        let err = apply(&bad, &Overrides::default(), &|_| None).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn stages_replace_the_profiles_and_bad_ones_say_how_to_write_them() {
        let (_dir, path) = write(PROFILE);
        let o = Overrides {
            stages: vec!["10s:100".into(), "20s:100".into()],
            ..Overrides::default()
        };
        let e = apply(&path, &o, &|_| None).unwrap();
        let p = crate::profile::Profile::parse(&e.text).unwrap();
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.peak_users(), 100);
        for (bad, want) in [
            ("10s", "DURATION:TARGET"),
            ("10:100", "add a unit"),
            ("10s:many", "whole number"),
        ] {
            let o = Overrides {
                stages: vec![bad.into()],
                ..Overrides::default()
            };
            let err = apply(&path, &o, &|_| None).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
        // Nothing asked: the text is the file's, unchanged.
        let (_d, plain) = write("users: 1\n");
        let e = apply(&plain, &Overrides::default(), &|_| None).unwrap();
        assert!(!e.changed);
        assert!(parse_var("A B=1").is_err());
        assert_eq!(parse_var("USERS=5").unwrap(), ("USERS".into(), "5".into()));
    }
}
