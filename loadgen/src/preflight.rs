//! What a run checks before anything starts, and `loadgen validate` with it: the files
//! the profile names exist and read, and this machine can hold the users (open files,
//! processes, memory at the bytes per connection measured here, docs/scale.md). What
//! cannot run is refused with the numbers that say why.

use crate::identity::Machine;
use crate::profile::{Profile, Target};
use std::path::Path;

/// Bytes per connection held, user space and kernel (docs/scale.md): the load
/// generator's side and the gateways', over TCP and over QUIC.
const LOADGEN_TCP: u64 = 4_800;
const LOADGEN_QUIC: u64 = 21_000;
const GATEWAY_TCP: u64 = 5_800;
const GATEWAY_QUIC: u64 = 20_000;
/// More local processes than this is no longer one machine's job.
const MAX_PROCESSES: u64 = 5_000;

/// About what one user costs a load-generator host, user space and kernel, by the
/// profile's transports.
pub fn loadgen_bytes_per_user(profile: &Profile) -> u64 {
    if profile.behaviour.transport.any_quic() {
        LOADGEN_QUIC
    } else {
        LOADGEN_TCP
    }
}

/// Checks `profile` for a run on `machine` whose local workers hold `local_users` of
/// its users (all of them for `loadgen run`, none for a coordinator).
pub fn check(profile: &Profile, local_users: u64, machine: &Machine) -> Result<(), String> {
    check_files(profile)?;
    let quic = profile.behaviour.transport.any_quic();
    let per_user = loadgen_bytes_per_user(profile);
    let mut need = local_users.saturating_mul(per_user);
    let mut parts = vec![format!(
        "{local_users} users x {per_user} B on the load generator's side"
    )];
    if local_users > 0 {
        let workers = profile
            .behaviour
            .transport
            .workers_for(local_users, machine.open_files);
        if workers > MAX_PROCESSES {
            return Err(format!(
                "{local_users} users need {workers} worker processes at {} open files each, more than the {MAX_PROCESSES} one machine runs: lower users, or spread them over machines (loadgen coordinator)",
                machine.open_files
            ));
        }
    }
    if let Target::Spawn(_) = &profile.target {
        let peak = profile.peak_users();
        let per = if quic { GATEWAY_QUIC } else { GATEWAY_TCP };
        need = need.saturating_add(peak.saturating_mul(per));
        parts.push(format!("{peak} connections x {per} B on the gateways"));
    }
    if machine.memory_bytes > 0 && need > machine.memory_bytes {
        return Err(format!(
            "this machine has {:.1} GiB and the run needs about {:.1} GiB ({}; the bytes per connection measured here, docs/scale.md): lower users, or spread them over machines (loadgen coordinator)",
            gib(machine.memory_bytes),
            gib(need),
            parts.join(" + ")
        ));
    }
    Ok(())
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// The ports a spawned system will listen on are free: payment at the base port, the
/// envelope backend at +1, gateway i at +10+i (TCP, and UDP for QUIC), each part's
/// /metrics 1000 above. Gateways sized for the peak are checked as far as known here.
pub fn check_ports(profile: &Profile) -> Result<(), String> {
    let Target::Spawn(s) = &profile.target else {
        return Ok(());
    };
    let gateways = s.gateways.unwrap_or(1);
    let mut ports: Vec<(u16, &str)> = vec![(0, "payment"), (1, "the envelope backend")];
    ports.extend((0..gateways).map(|i| (10 + i, "a gateway")));
    for (offset, part) in ports {
        for port in [
            s.base_port.checked_add(offset),
            s.base_port.checked_add(offset + 1000),
        ] {
            let Some(port) = port else {
                return Err(format!(
                    "target.spawn.base_port: {} leaves no room for {part}'s ports; lower it",
                    s.base_port
                ));
            };
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Err(format!(
                    "target.spawn.base_port: port {port} (for {part}) is taken ({e}): stop what holds it or choose another base_port"
                ));
            }
        }
    }
    Ok(())
}

/// Every file the profile names exists and reads as what it should be.
fn check_files(profile: &Profile) -> Result<(), String> {
    match &profile.target {
        Target::Spawn(s) => {
            let text = read(&s.timeline, "target.spawn.timeline")?;
            sut_wire::timeline::Timeline::parse(&text, &s.timeline.display().to_string())
                .map_err(|e| format!("target.spawn.timeline: {e}"))?;
        }
        Target::Addresses(a) => {
            read(&a.auth_key_file, "target.addresses.auth_key_file")?;
            if let Some(cert) = &a.quic_cert {
                read(cert, "target.addresses.quic_cert")?;
            }
        }
    }
    Ok(())
}

fn read(path: &Path, field: &str) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "{field}: cannot read {}: {}",
            path.display(),
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => e.to_string(),
            }
        )
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(dir: &Path, users: u64, target: &str) -> Profile {
        std::fs::write(
            dir.join("timeline.yaml"),
            "rounds:\n  - { id: 1, start: 1s, duration: 5s, envelopes: 10, rate: 10, amount_cents: [1, 5], sponsors: [1] }\n",
        )
        .unwrap();
        std::fs::write(dir.join("auth.key"), "k").unwrap();
        let text = format!(
            "users: {users}\nstages: [{{ duration: 10s, target: {users} }}]\n{target}\nbehaviour: {{ shake_rate: 1, open_probability: 1 }}\n"
        );
        let path = dir.join("p.yaml");
        std::fs::write(&path, text).unwrap();
        Profile::load(&path).unwrap()
    }

    fn big() -> Machine {
        Machine {
            open_files: 20_000,
            memory_bytes: 24 << 30,
            ..Machine::this()
        }
    }

    #[test]
    fn what_fits_passes_and_what_does_not_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let spawn = "target: { spawn: { timeline: timeline.yaml } }";
        assert!(check(&profile(dir.path(), 3_000, spawn), 3_000, &big()).is_ok());
        let e = check(
            &profile(dir.path(), 1_000_000_000_000, spawn),
            1_000_000_000_000,
            &big(),
        )
        .unwrap_err();
        assert!(e.contains("worker processes"), "{e}");
        let e = check(&profile(dir.path(), 3_000_000, spawn), 3_000_000, &big()).unwrap_err();
        assert!(e.contains("the run needs about 29.6 GiB"), "{e}");
        // A coordinator holds no users itself; the gateways it spawns still count.
        let e = check(&profile(dir.path(), 5_000_000, spawn), 0, &big()).unwrap_err();
        assert!(e.contains("on the gateways"), "{e}");
    }

    #[test]
    fn a_taken_port_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let base = port - 1; // the envelope backend's port is the taken one
        let p = profile(
            dir.path(),
            10,
            &format!("target: {{ spawn: {{ timeline: timeline.yaml, gateways: 1, base_port: {base} }} }}"),
        );
        let e = check_ports(&p).unwrap_err();
        assert!(
            e.contains(&format!("port {port} (for the envelope backend) is taken")),
            "{e}"
        );
        drop(taken);
    }

    #[test]
    fn missing_files_are_named_by_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(dir.path(), 10, "target: { spawn: { timeline: nope.yaml } }");
        let e = check(&p, 10, &big()).unwrap_err();
        assert!(e.starts_with("target.spawn.timeline: cannot read"), "{e}");
        assert!(e.contains("no such file"), "{e}");
        let addr = format!(
            "target: {{ addresses: {{ gateways: [127.0.0.1:1], auth_key_file: {} }} }}",
            dir.path().join("missing.key").display()
        );
        let e = check(&profile(dir.path(), 10, &addr), 10, &big()).unwrap_err();
        assert!(e.starts_with("target.addresses.auth_key_file"), "{e}");
        let p = profile(
            dir.path(),
            10,
            "target: { spawn: { timeline: timeline.yaml } }",
        );
        std::fs::write(dir.path().join("timeline.yaml"), "rounds: nonsense").unwrap();
        let e = check(&p, 10, &big()).unwrap_err();
        assert!(e.starts_with("target.spawn.timeline: "), "{e}");
    }
}
