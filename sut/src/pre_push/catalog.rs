//! What a resource server hands out: the newest signed manifest and its items' bytes,
//! held in memory and reloaded from the data directory when a newer version appears.

use super::files;
use bytes::Bytes;
use std::collections::HashMap;
use std::path::Path;
use sut_wire::resource_manifest::{ResourceItem, ResourceManifest};
use sut_wire::schedule::OperatorPublic;

/// The most item bytes a server holds in memory.
pub const MAX_CATALOG_BYTES: u64 = 1 << 30;

pub struct Catalog {
    pub manifest: ResourceManifest,
    /// The signed manifest's JSON, as served.
    pub signed: Bytes,
    bodies: HashMap<u32, (ResourceItem, Bytes)>,
}

impl Catalog {
    /// Item `id`'s entry and bytes.
    pub fn item(&self, id: u32) -> Option<(ResourceItem, Bytes)> {
        self.bodies.get(&id).cloned()
    }

    /// Reads manifest `version` and every item's bytes, checking each against its
    /// digest (a damaged file is not served as the item).
    pub fn load(data: &Path, version: u64, public: &OperatorPublic) -> Result<Catalog, String> {
        let (manifest, signed) = files::load(data, version, public).map_err(|e| e.to_string())?;
        if manifest.total_bytes() > MAX_CATALOG_BYTES {
            return Err(format!(
                "manifest version {version} lists {} bytes; a resource server holds at most {MAX_CATALOG_BYTES}",
                manifest.total_bytes()
            ));
        }
        let mut bodies = HashMap::new();
        for item in &manifest.items {
            let path = files::item_path(data, item.id, item.version);
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if sut_core::pre_push::artwork::digest_hex(&bytes) != item.sha256 {
                return Err(format!(
                    "{} does not match its digest in manifest version {version}",
                    path.display()
                ));
            }
            bodies.insert(item.id, (item.clone(), Bytes::from(bytes)));
        }
        Ok(Catalog {
            signed: Bytes::from(signed.to_json()),
            manifest,
            bodies,
        })
    }
}
