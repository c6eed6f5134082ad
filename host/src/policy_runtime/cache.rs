//! Cache of compiled policy components, so that start and repeated swaps
//! skip Cranelift.
//!
//! Keyed by the component file's SHA-256 and the engine's compatibility hash
//! (wasmtime version and every setting that changes generated code), so an
//! artefact is only ever loaded into an engine that could have produced it.
//! Two levels: compiled `Component`s in memory, and precompiled artefacts on
//! disk (optional) that survive restarts. A disk artefact carries its own
//! SHA-256 and is checked before it is deserialized, because deserializing
//! is trusted native code; a bad or truncated file is recompiled, not loaded.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::compiler::{self, ChildFailed, Codegen, CompileIn};

/// How a component was obtained, for logs and the swap benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Compiled earlier in this process.
    Memory,
    /// Precompiled by an earlier run, read from the cache directory.
    Disk,
    /// Compiled now.
    Compiled,
}

/// Compiled components by content hash, in memory and (optionally) on disk.
pub struct ComponentCache {
    dir: Option<PathBuf>,
    compile_in: CompileIn,
    codegen: Codegen,
    engine_key: String,
    memory: Mutex<HashMap<[u8; 32], Component>>,
}

impl ComponentCache {
    /// A cache for `engine`'s configuration, on disk under `dir` if given.
    pub fn new(
        engine: &Engine,
        dir: Option<PathBuf>,
        compile_in: CompileIn,
        codegen: Codegen,
    ) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        ComponentCache {
            dir,
            compile_in,
            codegen,
            engine_key: format!("{:016x}", h.finish()),
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled component for `bytes`, from cache or freshly compiled.
    /// Fails with the compiler's reason, as one line, when `bytes` is not a
    /// component this engine accepts.
    pub fn get(&self, engine: &Engine, bytes: &[u8]) -> Result<(Component, CacheOutcome), String> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(c) = self.memory.lock().get(&key) {
            return Ok((c.clone(), CacheOutcome::Memory));
        }
        let path = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.cwasm", hex(&key), self.engine_key)));
        if let Some(c) = path.as_ref().and_then(|p| self.read_disk(engine, p)) {
            self.memory.lock().insert(key, c.clone());
            return Ok((c, CacheOutcome::Disk));
        }
        let (artefact, component) = self.compile(engine, bytes)?;
        if let Some(p) = path {
            self.write_disk(&p, &artefact);
        }
        self.memory.lock().insert(key, component.clone());
        Ok((component, CacheOutcome::Compiled))
    }

    /// Compile `bytes` where configured; a child that cannot run, or whose
    /// artefact this engine refuses, is logged and the compile done here.
    fn compile(&self, engine: &Engine, bytes: &[u8]) -> Result<(Vec<u8>, Component), String> {
        let fallback = |why: String| {
            tracing::warn!(reason = %why, "compiling the policy in this process instead of a child");
            compiler::in_process(engine, bytes)
        };
        let artefact = match self.compile_in.compile(engine, self.codegen, bytes) {
            Ok(artefact) => artefact,
            Err(ChildFailed::Refused(reason)) => return Err(reason),
            Err(ChildFailed::Unavailable(why)) => fallback(why)?,
        };
        let deserialize = |artefact: Vec<u8>| {
            // SAFETY: the artefact was produced just now, by this engine or
            // by a child running this same executable with the same engine
            // settings (`compiler`); deserialize checks the wasmtime version
            // and settings it was built with.
            match unsafe { Component::deserialize(engine, &artefact) } {
                Ok(component) => Ok((artefact, component)),
                Err(e) => Err(one_line(&e)),
            }
        };
        match (deserialize(artefact), &self.compile_in) {
            (Err(why), CompileIn::Child(_)) => {
                deserialize(fallback(format!("its artefact was refused: {why}"))?)
            }
            (result, _) => result,
        }
    }

    fn read_disk(&self, engine: &Engine, path: &PathBuf) -> Option<Component> {
        let data = std::fs::read(path).ok()?;
        if data.len() < 32 {
            return None;
        }
        let (artefact, sum) = data.split_at(data.len() - 32);
        if Sha256::digest(artefact).as_slice() != sum {
            tracing::warn!(path = %path.display(), "corrupt compiled-policy cache entry; recompiling");
            return None;
        }
        // SAFETY: the file name binds it to this component and engine config,
        // and its checksum shows it is the artefact `write_disk` stored.
        match unsafe { Component::deserialize(engine, artefact) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable compiled-policy cache entry; recompiling");
                None
            }
        }
    }

    fn write_disk(&self, path: &PathBuf, artefact: &[u8]) {
        let result = (|| -> std::io::Result<()> {
            let dir = path.parent().expect("cache path has a parent");
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, artefact)?;
            std::io::Write::write_all(&mut tmp, &Sha256::digest(artefact))?;
            tmp.persist(path).map_err(|e| e.error)?;
            Ok(())
        })();
        if let Err(e) = result {
            // A cache is an optimisation: failing to fill it is not an error.
            tracing::debug!(path = %path.display(), error = %e, "could not store compiled policy");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A wasmtime error chain as one log- and terminal-friendly line.
pub(super) fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
