//! The Kubernetes manifests (deploy/k8s) carry a profile and a timeline inside their
//! ConfigMaps; both must be ones the binaries accept, and the names the pieces use to
//! find each other must agree. (Their Kubernetes schemas are checked by
//! scripts/k8s-check.sh, which the README's test command runs.)

use serde::Deserialize;
use std::path::Path;

fn documents(file: &str) -> Vec<serde_yaml::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/k8s")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect()
}

fn config_map(docs: &[serde_yaml::Value], name: &str, key: &str) -> String {
    docs.iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
        .and_then(|d| d["data"][key].as_str())
        .unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
        .to_string()
}

fn replicas(docs: &[serde_yaml::Value], kind: &str, name: &str, field: &str) -> u64 {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .and_then(|d| d["spec"][field].as_u64())
        .unwrap_or_else(|| panic!("{kind} {name} has no spec.{field}"))
}

#[test]
fn the_manifests_profile_and_timeline_are_valid_and_agree() {
    let sut = documents("sut.yaml");
    let loadgen_docs = documents("loadgen.yaml");
    let profile = loadgen::profile::Profile::parse(&config_map(
        &loadgen_docs,
        "loadgen-profile",
        "profile.yaml",
    ))
    .unwrap_or_else(|e| panic!("the profile in deploy/k8s/loadgen.yaml: {e}"));
    sut_wire::timeline::Timeline::parse(&config_map(&sut, "sut-show", "timeline.yaml"), "sut-show")
        .unwrap();

    // As many gateways as the show says, each listed by its stable name in id order.
    let gateways: u64 = config_map(&sut, "sut-show", "gateways").parse().unwrap();
    assert_eq!(
        replicas(&sut, "StatefulSet", "sut-gateway", "replicas"),
        gateways
    );
    let loadgen::profile::Target::Addresses(a) = &profile.target else {
        panic!("the k8s profile targets addresses");
    };
    let expected: Vec<String> = (0..gateways)
        .map(|i| format!("sut-gateway-{i}.sut-gateway:7110"))
        .collect();
    assert_eq!(a.gateways, expected);

    // The Job runs as many agents as the coordinator waits for, and at least the
    // profile's minimum.
    let agents = replicas(&loadgen_docs, "Job", "loadgen-agents", "completions");
    let coordinator = serde_yaml::to_string(
        loadgen_docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap(),
    )
    .unwrap();
    assert!(
        coordinator.contains(&format!("--agents={agents}")),
        "{coordinator}"
    );
    assert!(profile.agents.as_ref().is_some_and(|m| m.min <= agents));
}
