//! Features of a frozen pretrained encoder, kept per input so the encoder
//! runs once for each distinct question or image.
//!
//! A frozen encoder maps the same input to the same features every time, so
//! a cache keyed by the input (its token ids, or a hash of its pixels) is
//! exact. Training asks the same questions about the same images many times;
//! with the cache only the layers that learn run on every step.
//!
//! Image features can also be written to disk in f16 and read back by later
//! runs (`save`, `load`). The file holds a fingerprint of the encoder and its
//! settings; a file of another encoder is ignored. A changed image has
//! another key, so its features are computed anew.
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use twox_hash::XxHash3_64;

/// One input's features, row after row.
pub type Features = Arc<[f32]>;

/// Features by input, up to `limit` inputs; beyond it new features are
/// returned but not kept.
#[derive(Debug)]
pub struct FeatureCache<K> {
    entries: Mutex<Entries<K>>,
    limit: usize,
}

#[derive(Debug)]
struct Entries<K> {
    map: HashMap<K, Features>,
    /// Keys read from a file that this process has not asked for: when the
    /// cache is full they make room first, so that a file of another run's
    /// inputs cannot crowd out this run's.
    unread: HashSet<K>,
}

impl<K: Hash + Eq + Clone + Ord> FeatureCache<K> {
    pub fn new(limit: usize) -> Self {
        FeatureCache {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                unread: HashSet::new(),
            }),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many inputs' features are held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features of every key, in order. `compute` gets the keys not held
    /// (each once, sorted) and returns their features in that order.
    pub fn get_or_compute(
        &self,
        keys: &[K],
        compute: impl FnOnce(&[&K]) -> candle_core::Result<Vec<Features>>,
    ) -> candle_core::Result<Vec<Features>> {
        let mut found: Vec<Option<Features>> = {
            let mut entries = self.lock();
            keys.iter()
                .map(|k| {
                    let hit = entries.map.get(k).cloned();
                    if hit.is_some() {
                        entries.unread.remove(k);
                    }
                    hit
                })
                .collect()
        };
        let mut missing: Vec<&K> = keys
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(k, _)| k)
            .collect();
        if missing.is_empty() {
            return Ok(found.into_iter().flatten().collect());
        }
        missing.sort();
        missing.dedup();
        let computed = compute(&missing)?;
        if computed.len() != missing.len() {
            candle_core::bail!(
                "the encoder returned {} features for {} inputs",
                computed.len(),
                missing.len()
            );
        }
        let fresh: HashMap<&K, &Features> = missing.iter().copied().zip(&computed).collect();
        for (key, slot) in keys.iter().zip(found.iter_mut()) {
            if slot.is_none() {
                *slot = fresh.get(key).map(|f| (*f).clone());
            }
        }
        let mut entries = self.lock();
        for (key, features) in missing.into_iter().zip(&computed) {
            if entries.map.len() >= self.limit {
                let Some(stale) = entries.unread.iter().next().cloned() else {
                    break;
                };
                entries.unread.remove(&stale);
                entries.map.remove(&stale);
            }
            entries.map.insert(key.clone(), features.clone());
        }
        drop(entries);
        Ok(found.into_iter().flatten().collect())
    }
}

/// A 64-bit hash of `values`' bits, as the key of an image's pixels.
/// XXH3, whose output is fixed by its specification, so cache files stay
/// valid across builds and toolchains.
pub fn hash_floats(values: &[f32]) -> u64 {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    XxHash3_64::oneshot(&bytes)
}

/// A 64-bit hash (XXH3) of a file's bytes, as part of an encoder's fingerprint.
pub fn hash_file(path: &Path) -> Result<u64> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = XxHash3_64::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    Ok(hasher.finish())
}

const MAGIC: &[u8; 8] = b"FCFEAT01";
const HEADER: usize = 8 + 3 * 8;

impl FeatureCache<u64> {
    /// Writes every entry of `width` floats (as f16) to `path`, atomically.
    pub fn save(&self, path: &Path, fingerprint: u64, width: usize) -> Result<()> {
        let entries: Vec<(u64, Features)> = {
            let entries = self.lock();
            let mut e: Vec<_> = entries.map.iter().map(|(k, f)| (*k, f.clone())).collect();
            e.sort_by_key(|(k, _)| *k);
            e
        };
        if let Some((_, f)) = entries.iter().find(|(_, f)| f.len() != width) {
            bail!("a cached feature has {} values, not {width}", f.len());
        }
        crate::atomic::write_atomically(path, |tmp| {
            let mut out = std::io::BufWriter::new(std::fs::File::create(tmp)?);
            out.write_all(MAGIC)?;
            for n in [fingerprint, width as u64, entries.len() as u64] {
                out.write_all(&n.to_le_bytes())?;
            }
            for (key, features) in &entries {
                out.write_all(&key.to_le_bytes())?;
                for v in features.iter() {
                    out.write_all(&half::f16::from_f32(*v).to_le_bytes())?;
                }
            }
            out.flush()?;
            Ok(())
        })
    }

    /// Reads a file written by `save`. `Ok(None)` when there is no file, or
    /// it belongs to another encoder (`fingerprint`) or feature `width`.
    pub fn load(path: &Path, fingerprint: u64, width: usize, limit: usize) -> Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let corrupt = || {
            anyhow::anyhow!(
                "{} is not a fusecap feature cache, or is cut short; delete it and it is rebuilt",
                path.display()
            )
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(corrupt());
        }
        let word = |i: usize| {
            let at = 8 + 8 * i;
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default())
        };
        if word(0) != fingerprint || word(1) != width as u64 {
            return Ok(None);
        }
        let count = word(2);
        let entry = 8 + 2 * width as u64;
        let expected = count
            .checked_mul(entry)
            .and_then(|n| n.checked_add(HEADER as u64));
        if expected != Some(bytes.len() as u64) {
            return Err(corrupt());
        }
        let cache = FeatureCache::new(limit);
        let mut entries = cache.lock();
        for chunk in bytes[HEADER..].chunks_exact(entry as usize).take(limit) {
            let (key, values) = chunk.split_at(8);
            let key = u64::from_le_bytes(key.try_into().unwrap_or_default());
            let features: Features = values
                .chunks_exact(2)
                .map(|h| half::f16::from_le_bytes([h[0], h[1]]).to_f32())
                .collect();
            entries.map.insert(key, features);
            entries.unread.insert(key);
        }
        drop(entries);
        Ok(Some(cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(v: f32) -> Features {
        vec![v, v + 0.5].into()
    }

    #[test]
    fn missing_keys_are_computed_once_each_and_kept_up_to_the_limit() {
        let cache = FeatureCache::new(2);
        let mut asked = Vec::new();
        let got = cache
            .get_or_compute(&[3u64, 1, 3, 2], |missing| {
                asked.extend(missing.iter().map(|k| **k));
                Ok(missing.iter().map(|k| features(**k as f32)).collect())
            })
            .expect("computed");
        assert_eq!(asked, [1, 2, 3], "each missing key once, sorted");
        let firsts: Vec<f32> = got.iter().map(|f| f[0]).collect();
        assert_eq!(firsts, [3.0, 1.0, 3.0, 2.0], "in the order asked");
        assert_eq!(cache.len(), 2, "the limit");
        let again = cache
            .get_or_compute(&[1u64, 2], |missing| {
                Ok(missing.iter().map(|_| features(-1.0)).collect())
            })
            .expect("cached");
        let firsts: Vec<f32> = again.iter().map(|f| f[0]).collect();
        assert_eq!(firsts, [1.0, 2.0], "kept keys are not recomputed");
    }

    /// A full cache read from a file: keys this process never asked for make
    /// room for new ones, keys it read stay.
    #[test]
    fn a_full_file_of_other_inputs_gives_way_to_this_runs_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.cache");
        let old = FeatureCache::new(3);
        old.get_or_compute(&[1u64, 2, 3], |m| {
            Ok(m.iter().map(|k| features(**k as f32)).collect())
        })
        .expect("computed");
        old.save(&path, 42, 2).expect("save");
        let cache = FeatureCache::load(&path, 42, 2, 3)
            .expect("load")
            .expect("same encoder");
        cache
            .get_or_compute(&[2u64], |_| candle_core::bail!("2 is in the file"))
            .expect("read");
        let computed = std::cell::Cell::new(0);
        let compute = |m: &[&u64]| {
            computed.set(computed.get() + m.len());
            Ok(m.iter().map(|k| features(**k as f32)).collect())
        };
        cache
            .get_or_compute(&[10u64, 11], compute)
            .expect("new keys");
        assert_eq!(computed.get(), 2);
        assert_eq!(cache.len(), 3, "still within the limit");
        cache
            .get_or_compute(&[2u64, 10, 11], |_| candle_core::bail!("all kept"))
            .expect("the read key and both new ones are kept");
        cache
            .get_or_compute(&[12u64], compute)
            .expect("no room left");
        cache
            .get_or_compute(&[12u64], compute)
            .expect("asked again");
        assert_eq!(computed.get(), 4, "a full cache of read keys computes anew");
    }

    #[test]
    fn a_file_whose_count_disagrees_with_its_length_is_refused_before_reading_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.cache");
        let cache = FeatureCache::new(10);
        cache
            .get_or_compute(&[7u64], |_| Ok(vec![features(1.0)]))
            .expect("computed");
        cache.save(&path, 42, 2).expect("save");
        let loaded = FeatureCache::load(&path, 42, 2, 10)
            .expect("load")
            .expect("same encoder");
        let back = loaded
            .get_or_compute(&[7u64], |_| candle_core::bail!("not cached"))
            .expect("read back");
        assert_eq!(&back[0][..], &[1.0, 1.5]);
        assert!(FeatureCache::load(&path, 43, 2, 10)
            .expect("load")
            .is_none());
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER - 8..HEADER].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).expect("write");
        let err = FeatureCache::load(&path, 42, 2, 10).expect_err("refused");
        assert!(err.to_string().contains("delete it"), "{err}");
    }
}
