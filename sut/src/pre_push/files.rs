//! The operator's side of pre-push in a data directory: every item version's bytes
//! (`resources/items/ID-vVERSION.bin`) and every signed manifest version
//! (`resources/manifest/v000002.json`), created and never replaced.
//!
//! The first manifest lists the timeline's greeting images first, then other sponsor
//! items up to the asked count (the seed's 65 by default); an update gives the named
//! items new bytes and signs the next version, listing every item again.

use crate::files::{create_once, read_bytes, write_atomic, FileError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use sut_core::pre_push::artwork;
use sut_wire::resource_manifest::{ManifestError, ResourceItem, ResourceManifest, SignedManifest};
use sut_wire::schedule::{numbered, numbers_in, OperatorKey, OperatorPublic};
use sut_wire::timeline::Timeline;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ResourceFileError {
    #[error("{path}: {source}")]
    Manifest { path: String, source: ManifestError },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Change(String),
}

/// How many items the first manifest lists and how large they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Catalogue {
    pub items: usize,
    /// Sizes spread from `min_bytes` to `max_bytes` over the items.
    pub min_bytes: u64,
    pub max_bytes: u64,
}

impl Default for Catalogue {
    /// The seed's 65 items, scaled from megabytes to kilobytes for one machine.
    fn default() -> Catalogue {
        Catalogue {
            items: 65,
            min_bytes: 8 << 10,
            max_bytes: 64 << 10,
        }
    }
}

pub fn dir(data: &Path) -> PathBuf {
    data.join("resources")
}

pub fn item_path(data: &Path, id: u32, version: u32) -> PathBuf {
    dir(data).join("items").join(format!("{id}-v{version}.bin"))
}

fn manifest_dir(data: &Path) -> PathBuf {
    dir(data).join("manifest")
}

fn manifest_path(data: &Path, version: u64) -> PathBuf {
    numbered(&manifest_dir(data), version)
}

/// The manifest versions recorded, lowest first.
pub fn versions(data: &Path) -> Vec<u64> {
    numbers_in(&manifest_dir(data))
}

/// Reads and verifies one recorded version.
pub fn load(
    data: &Path,
    version: u64,
    public: &OperatorPublic,
) -> Result<(ResourceManifest, SignedManifest), ResourceFileError> {
    let path = manifest_path(data, version);
    let bad = |source| ResourceFileError::Manifest {
        path: path.display().to_string(),
        source,
    };
    let signed = SignedManifest::from_json(&read_bytes(&path)?).map_err(bad)?;
    let manifest = public.verify_manifest(&signed).map_err(bad)?;
    Ok((manifest, signed))
}

/// The newest recorded version, verified.
pub fn newest(
    data: &Path,
    public: &OperatorPublic,
) -> Result<Option<(ResourceManifest, SignedManifest)>, ResourceFileError> {
    match versions(data).last() {
        Some(v) => load(data, *v, public).map(Some),
        None => Ok(None),
    }
}

/// The first manifest, made when the data directory has none (a restart keeps what
/// is there). Returns the version now newest.
pub fn publish_first(
    data: &Path,
    key: &OperatorKey,
    timeline: &Timeline,
    catalogue: Catalogue,
) -> Result<ResourceManifest, ResourceFileError> {
    if let Some((m, _)) = newest(data, &key.public())? {
        return Ok(m);
    }
    let named: BTreeSet<u32> = timeline
        .rounds
        .iter()
        .flat_map(|r| r.resources.iter().copied())
        .collect();
    let mut ids: Vec<u32> = named.iter().copied().collect();
    ids.extend(
        (1u32..)
            .filter(|i| !named.contains(i))
            .take(catalogue.items.saturating_sub(ids.len())),
    );
    let count = ids.len();
    let items = ids
        .into_iter()
        .enumerate()
        .map(|(n, id)| {
            let size = artwork::size_of(n, count, catalogue.min_bytes, catalogue.max_bytes);
            write_item(data, id, 1, size)
        })
        .collect::<Result<Vec<_>, _>>()?;
    sign_and_record(data, key, 1, items)
}

/// Gives the items `ids` new bytes (their next version) and records the next manifest.
pub fn update(
    data: &Path,
    key: &OperatorKey,
    ids: &[u32],
) -> Result<ResourceManifest, ResourceFileError> {
    let Some((current, _)) = newest(data, &key.public())? else {
        return Err(ResourceFileError::Change(format!(
            "{} holds no resource manifest yet; start the system with resource servers first",
            dir(data).display()
        )));
    };
    let mut items = current.items.clone();
    for id in ids {
        let Some(item) = items.iter_mut().find(|i| i.id == *id) else {
            let listed: Vec<String> = current.items.iter().map(|i| i.id.to_string()).collect();
            return Err(ResourceFileError::Change(format!(
                "item {id} is not in manifest version {}; it lists {}",
                current.version,
                listed.join(", ")
            )));
        };
        *item = write_item(data, item.id, item.version + 1, item.size)?;
    }
    sign_and_record(data, key, current.version + 1, items)
}

fn write_item(
    data: &Path,
    id: u32,
    version: u32,
    size: u64,
) -> Result<ResourceItem, ResourceFileError> {
    let body = artwork::body(id, version, size);
    let path = item_path(data, id, version);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| FileError::Write {
            path: parent.display().to_string(),
            source,
        })?;
    }
    write_atomic(&path, &body)?;
    Ok(ResourceItem {
        id,
        version,
        size,
        sha256: artwork::digest_hex(&body),
    })
}

/// Signs version `version` and records it; a version number is claimed once
/// ([`create_once`]), so two operators never both publish it.
fn sign_and_record(
    data: &Path,
    key: &OperatorKey,
    version: u64,
    items: Vec<ResourceItem>,
) -> Result<ResourceManifest, ResourceFileError> {
    let manifest = ResourceManifest {
        version,
        signed_unix_ms: shellkit::clock::unix_ms(),
        items,
    };
    manifest
        .check()
        .map_err(|e| ResourceFileError::Change(e.to_string()))?;
    let signed = key.sign_manifest(&manifest);
    if create_once(&manifest_path(data, version), &signed.to_json())? {
        Ok(manifest)
    } else {
        Err(ResourceFileError::Change(format!(
            "manifest version {version} was published by someone else meanwhile; try again"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_manifest_lists_the_greetings_images_and_updates_change_only_what_is_named() {
        let data = tempfile::tempdir().unwrap();
        let key = crate::schedule_files::operator_key(data.path()).unwrap();
        let timeline = Timeline::parse(
            "rounds:\n  - { id: 1, start: 1s, duration: 5s, envelopes: 5, rate: 5, amount_cents: [1, 2], sponsors: [1], resources: [100, 101] }\n",
            "t",
        )
        .unwrap();
        let cat = Catalogue {
            items: 5,
            min_bytes: 10,
            max_bytes: 50,
        };
        let first = publish_first(data.path(), &key, &timeline, cat).unwrap();
        let ids: Vec<u32> = first.items.iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![100, 101, 1, 2, 3]);
        assert_eq!(first.items[4].size, 50);
        // A restart keeps the manifest there.
        assert_eq!(
            publish_first(data.path(), &key, &timeline, cat).unwrap(),
            first
        );
        let second = update(data.path(), &key, &[101, 3]).unwrap();
        assert_eq!(second.version, 2);
        let changed: Vec<u32> = second
            .items
            .iter()
            .zip(&first.items)
            .filter(|(a, b)| a.sha256 != b.sha256)
            .map(|(a, _)| a.id)
            .collect();
        assert_eq!(changed, vec![101, 3]);
        let body = std::fs::read(item_path(data.path(), 101, 2)).unwrap();
        assert_eq!(artwork::digest_hex(&body), second.items[1].sha256);
        let (read, _) = newest(data.path(), &key.public()).unwrap().unwrap();
        assert_eq!(read, second);
        let err = update(data.path(), &key, &[999]).unwrap_err().to_string();
        assert!(
            err.contains("item 999 is not in manifest version 2"),
            "{err}"
        );
        assert_eq!(versions(data.path()), vec![1, 2]);
    }
}
