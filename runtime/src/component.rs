//! Validating, compiling and pre-instantiating a component: the work done
//! once per component, never per request. What the bytes are is checked
//! first (`check_header`), and which engine takes them is read from what
//! they declare; compiled code comes from the cache, a `Precompiler` or
//! this process. [`precompile`], what a precompiler runs in its own
//! process, is here too, beside the check it starts with.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime_wasi_http::handler::ProxyPre;

use crate::engine::{EngineFlavor, Runtime, RuntimeConfig, Sandbox, engine_config};
use crate::error::LoadError;
use crate::instance::StoreData;

/// Which `wasi:http` handler a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    /// `wasi:http/incoming-handler@0.2.x` (WASIp2).
    P2,
    /// `wasi:http/handler@0.3.x` (WASIp3).
    P3,
}

impl HandlerKind {
    /// `"wasip2"` or `"wasip3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerKind::P2 => "wasip2",
            HandlerKind::P3 => "wasip3",
        }
    }
}

/// A validated, compiled and pre-instantiated HTTP component.
#[derive(Clone)]
pub struct Compiled {
    pub(crate) pre: Pre,
    sha256: String,
    kind: HandlerKind,
    size: usize,
    from_cache: bool,
    compile_time: Duration,
}

/// A pre-instantiated component, on the engine it was compiled for.
#[derive(Clone)]
pub(crate) enum Pre {
    /// A WASIp2 component on the plain engine, served by `driver/plain.rs`.
    Plain(Arc<wasmtime_wasi_http::p2::bindings::ProxyPre<StoreData>>),
    /// A component on the concurrent engine, served by
    /// `driver/concurrent.rs`.
    Concurrent(Arc<ProxyPre<StoreData>>),
}

impl Compiled {
    /// The engine it runs on.
    pub fn flavor(&self) -> EngineFlavor {
        match self.pre {
            Pre::Plain(_) => EngineFlavor::Plain,
            Pre::Concurrent(_) => EngineFlavor::Concurrent,
        }
    }

    /// The hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    /// The handler it exports.
    pub fn kind(&self) -> HandlerKind {
        self.kind
    }
    /// Size of the component bytes.
    pub fn size(&self) -> usize {
        self.size
    }
    /// Whether compiled code came from the cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
    /// Time spent compiling (or loading from the cache) and linking.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

/// The hex sha256 of `bytes`, the identity of a component everywhere in Shoal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Validates and compiles a component into the serialized code an engine
/// of `flavor` built from `config` loads: what a
/// [`Precompiler`](crate::engine::Precompiler) runs in its own process.
pub fn precompile(
    config: &RuntimeConfig,
    flavor: EngineFlavor,
    bytes: &[u8],
) -> Result<Vec<u8>, LoadError> {
    check_header(bytes)?;
    let engine = Engine::new(&engine_config(config, flavor))
        .map_err(|e| LoadError::Compiler(format!("{e:#}")))?;
    engine
        .precompile_component(bytes)
        .map_err(|e| LoadError::Invalid(format!("{e:#}")))
}

/// Says what kind of wasm `bytes` are, before anything is compiled.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || !bytes.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm {
            found: describe_start(bytes),
        });
    }
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        0 => Err(LoadError::CoreModule),
        1 => Ok(()),
        layer => Err(LoadError::Invalid(format!(
            "unknown wasm binary layer {layer}; this Shoal understands components of the component model"
        ))),
    }
}

fn describe_start(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing: the file is empty".into();
    }
    let head = &bytes[..bytes.len().min(16)];
    if head
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || b.is_ascii_whitespace())
    {
        format!("the text {:?}", String::from_utf8_lossy(head))
    } else {
        format!("the bytes {}", hex::encode(&head[..head.len().min(8)]))
    }
}

/// Whether the component imports or exports a WASI 0.3 interface
/// (`wasi:http/handler@0.3`, `wasi:clocks/...@0.3`): only the concurrent
/// engine links those. Read from its top-level import and export sections
/// before anything is compiled.
fn declares_wasi_p3(bytes: &[u8]) -> bool {
    use wasmparser::{Parser, Payload};
    let p3 = |name: &str| name.starts_with("wasi:") && name.contains("@0.3");
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let found = match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => {
                depth += 1;
                false
            }
            Ok(Payload::End(_)) => {
                depth = depth.saturating_sub(1);
                false
            }
            Ok(Payload::ComponentImportSection(imports)) if depth == 0 => {
                imports.into_iter().flatten().any(|i| p3(i.name.name))
            }
            Ok(Payload::ComponentExportSection(exports)) if depth == 0 => {
                exports.into_iter().flatten().any(|e| p3(e.name.name))
            }
            Ok(_) => false,
            // Left for the engine to report.
            Err(_) => return false,
        };
        if found {
            return true;
        }
    }
    false
}

impl Runtime {
    /// Validates, compiles (or loads from the cache) and pre-instantiates a
    /// component. This blocks for as long as compilation takes: call it from
    /// a blocking thread.
    ///
    /// A component that imports or exports WASI 0.3 goes to the concurrent
    /// engine. Any other goes to the plain engine, unless validation there
    /// refuses it for needing component-model concurrency, which the
    /// concurrent engine has.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, LoadError> {
        match self.load(bytes, true)? {
            Some(compiled) => Ok(compiled),
            None => unreachable!("a load that may compile always gives a component"),
        }
    }

    /// [`Runtime::compile`] if it takes no compilation: the component's code
    /// is in the cache of the engine it runs on. `None` when it is not (or
    /// when only the concurrent engine would take a component that does not
    /// declare WASI 0.3: that engine is not made just to look).
    pub fn compile_cached(&self, bytes: &[u8]) -> Result<Option<Compiled>, LoadError> {
        self.load(bytes, false)
    }

    fn load(&self, bytes: &[u8], may_compile: bool) -> Result<Option<Compiled>, LoadError> {
        let started = Instant::now();
        check_header(bytes)?;
        let sha256 = sha256_hex(bytes);
        let flavors: &[EngineFlavor] = if declares_wasi_p3(bytes) {
            &[EngineFlavor::Concurrent]
        } else {
            &[EngineFlavor::Plain, EngineFlavor::Concurrent]
        };
        for (tried, &flavor) in flavors.iter().enumerate() {
            let sandbox = self.engines.get(flavor)?;
            let cached = sandbox
                .cache
                .as_ref()
                .and_then(|c| c.load(&sandbox.engine, &sha256));
            let from_cache = cached.is_some();
            let component = match cached {
                Some(component) => Ok(component),
                None if may_compile => self.compile_fresh(sandbox, flavor, bytes, &sha256),
                None => return Ok(None),
            };
            let linked = component.and_then(|component| {
                let size = bytes.len();
                link(
                    sandbox,
                    flavor,
                    component,
                    size,
                    sha256.clone(),
                    from_cache,
                    started,
                )
            });
            match linked {
                Err(error) if tried + 1 < flavors.len() && needs_concurrency(&error) => {
                    if !may_compile {
                        return Ok(None);
                    }
                    tracing::debug!(%sha256, %error, "not for the plain engine; trying the concurrent one");
                }
                result => return result.map(Some),
            }
        }
        unreachable!("the last flavor returns")
    }

    /// Compiles what the cache does not hold, with the precompiler if there
    /// is one, and caches the code.
    fn compile_fresh(
        &self,
        sandbox: &Sandbox,
        flavor: EngineFlavor,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Component, LoadError> {
        if let Some(precompiler) = &self.engines.config.precompiler {
            let code = precompiler.precompile(bytes, flavor)?;
            match load_code(sandbox, sha256, &code) {
                Ok(component) => return Ok(component),
                // A precompiler of another wasmtime build (the binary was
                // replaced while running): its code does not load here.
                Err(error) => tracing::warn!(
                    %error,
                    "the precompiled code does not load in this engine; compiling in this process"
                ),
            }
        }
        let component = Component::new(&sandbox.engine, bytes)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        if let Some(cache) = &sandbox.cache
            && let Err(error) = cache.store(sha256, &component)
        {
            tracing::warn!(%error, "compiled code not cached; the next start compiles again");
        }
        Ok(component)
    }
}

/// Whether the plain engine refused a component for what only the
/// concurrent engine has: a component-model concurrency feature (a `stream`
/// or `future` type, an async function; validation names the feature it
/// requires). Any other failure stands: compiling it again on the other
/// engine would fail the same way.
fn needs_concurrency(error: &LoadError) -> bool {
    matches!(error, LoadError::Invalid(reason) if reason.contains("requires the component model"))
}

/// Pre-instantiates a compiled component and finds its handler.
fn link(
    sandbox: &Sandbox,
    flavor: EngineFlavor,
    component: Component,
    size: usize,
    sha256: String,
    from_cache: bool,
    started: Instant,
) -> Result<Compiled, LoadError> {
    let pre = sandbox
        .linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::UnsatisfiedImport(format!("{e:#}")))?;
    let p2 = |pre| wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).ok();
    let (pre, kind) = match flavor {
        EngineFlavor::Plain => (p2(pre).map(|p| Pre::Plain(Arc::new(p))), HandlerKind::P2),
        EngineFlavor::Concurrent => {
            match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
                Ok(p3) => (
                    Some(Pre::Concurrent(Arc::new(ProxyPre::P3(p3)))),
                    HandlerKind::P3,
                ),
                Err(_) => (
                    p2(pre).map(|p| Pre::Concurrent(Arc::new(ProxyPre::P2(p)))),
                    HandlerKind::P2,
                ),
            }
        }
    };
    let Some(pre) = pre else {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(&sandbox.engine).map(|(name, _)| name).collect();
        return Err(LoadError::NoHttpExport {
            exports: if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            },
        });
    };
    Ok(Compiled {
        pre,
        sha256,
        kind,
        size,
        from_cache,
        compile_time: started.elapsed(),
    })
}

/// Loads a precompiler's code: through the cache (mapped from the file)
/// when there is one.
fn load_code(sandbox: &Sandbox, sha256: &str, code: &[u8]) -> Result<Component, String> {
    if let Some(cache) = &sandbox.cache {
        match cache.store_code(sha256, code) {
            Ok(()) => {
                if let Some(component) = cache.load(&sandbox.engine, sha256) {
                    return Ok(component);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "compiled code not cached; the next start compiles again")
            }
        }
    }
    // SAFETY: `code` is what `precompile` of this crate produced for an
    // engine of the same configuration and flavor, in a process of this
    // program (`Precompiler` promises it); wasmtime checks its header,
    // version and engine compatibility and refuses anything else.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize(&sandbox.engine, code) };
    loaded.map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Precompiler;

    /// The smallest valid component: a header and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// Compiles in this process, as the host's child process does.
    #[derive(Debug)]
    struct Here(RuntimeConfig);

    impl Precompiler for Here {
        fn precompile(&self, bytes: &[u8], flavor: EngineFlavor) -> Result<Vec<u8>, LoadError> {
            precompile(&self.0, flavor, bytes)
        }
    }

    /// Compiles in this process, noting the engine each compilation is for.
    #[derive(Debug, Default)]
    struct Noting(std::sync::Mutex<Vec<EngineFlavor>>);

    impl Precompiler for Noting {
        fn precompile(&self, bytes: &[u8], flavor: EngineFlavor) -> Result<Vec<u8>, LoadError> {
            self.0.lock().unwrap().push(flavor);
            precompile(&small_config(), flavor, bytes)
        }
    }

    /// Answers with something that is not code for this engine.
    #[derive(Debug)]
    struct Garbage;

    impl Precompiler for Garbage {
        fn precompile(&self, _bytes: &[u8], _flavor: EngineFlavor) -> Result<Vec<u8>, LoadError> {
            Ok(b"not compiled code".to_vec())
        }
    }

    /// Finds every component invalid.
    #[derive(Debug)]
    struct Refuses;

    impl Precompiler for Refuses {
        fn precompile(&self, _bytes: &[u8], _flavor: EngineFlavor) -> Result<Vec<u8>, LoadError> {
            Err(LoadError::Invalid("refused on purpose".into()))
        }
    }

    fn runtime(
        precompiler: Arc<dyn Precompiler>,
        cache_dir: Option<std::path::PathBuf>,
    ) -> Runtime {
        Runtime::new(RuntimeConfig {
            max_instances: 2,
            max_memory_per_instance: 1 << 20,
            cache_dir,
            precompiler: Some(precompiler),
            ..RuntimeConfig::default()
        })
        .unwrap()
    }

    fn small_config() -> RuntimeConfig {
        RuntimeConfig {
            max_instances: 2,
            max_memory_per_instance: 1 << 20,
            ..RuntimeConfig::default()
        }
    }

    #[test]
    fn a_precompilers_code_is_loaded_and_cached() {
        let cache = tempfile::tempdir().unwrap();
        let runtime = runtime(
            Arc::new(Here(small_config())),
            Some(cache.path().to_path_buf()),
        );
        assert!(matches!(runtime.compile_cached(EMPTY_COMPONENT), Ok(None)));
        // Compiled and loaded: the empty component then fails for what it
        // exports, not for how it was compiled.
        assert!(matches!(
            runtime.compile(EMPTY_COMPONENT),
            Err(LoadError::NoHttpExport { .. })
        ));
        // Cached: loaded with no compilation, it fails the same way.
        assert!(matches!(
            runtime.compile_cached(EMPTY_COMPONENT),
            Err(LoadError::NoHttpExport { .. })
        ));
    }

    #[test]
    fn a_component_declaring_wasi_0_3_is_compiled_for_the_concurrent_engine_only() {
        let noting = Arc::new(Noting::default());
        let runtime = runtime(noting.clone(), None);
        assert!(runtime.compile(EMPTY_COMPONENT).is_err());
        assert_eq!(*noting.0.lock().unwrap(), [EngineFlavor::Plain]);
        let p3 = wat::parse_str(
            r#"(component (import "wasi:clocks/monotonic-clock@0.3.0" (instance)))"#,
        )
        .unwrap();
        let error = runtime.compile(&p3).err();
        assert!(
            matches!(
                error,
                Some(LoadError::UnsatisfiedImport(_) | LoadError::NoHttpExport { .. })
            ),
            "{error:?}"
        );
        assert_eq!(
            *noting.0.lock().unwrap(),
            [EngineFlavor::Plain, EngineFlavor::Concurrent]
        );
    }

    #[test]
    fn only_components_that_need_concurrency_go_to_the_concurrent_engine() {
        let runtime = Runtime::new(small_config()).unwrap();
        // Invalid on any engine: refused once, and the concurrent engine is
        // not made for it.
        let invalid = wat::parse_str("(component (core module (func (result i32))))").unwrap();
        assert!(matches!(
            runtime.compile(&invalid),
            Err(LoadError::Invalid(_))
        ));
        assert_eq!(runtime.engines.made().count(), 1);
        // A `stream` type needs component-model concurrency: the plain
        // engine refuses it, the concurrent one compiles it (and then finds
        // no HTTP export).
        let streams = wat::parse_str("(component (type (stream u8)))").unwrap();
        assert!(matches!(
            runtime.compile(&streams),
            Err(LoadError::NoHttpExport { .. })
        ));
        assert_eq!(runtime.engines.made().count(), 2);
    }

    #[test]
    fn code_that_does_not_load_falls_back_to_compiling_here() {
        let runtime = runtime(Arc::new(Garbage), None);
        assert!(matches!(
            runtime.compile(EMPTY_COMPONENT),
            Err(LoadError::NoHttpExport { .. })
        ));
    }

    #[test]
    fn a_precompilers_verdict_on_invalid_bytes_stands() {
        let runtime = runtime(Arc::new(Refuses), None);
        match runtime.compile(EMPTY_COMPONENT) {
            Err(error) => assert!(error.to_string().contains("refused on purpose"), "{error}"),
            Ok(_) => panic!("an invalid component compiled"),
        }
    }

    #[test]
    fn precompile_checks_what_the_bytes_are() {
        assert!(matches!(
            precompile(&small_config(), EngineFlavor::Plain, b"hello"),
            Err(LoadError::NotWasm { .. })
        ));
    }

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(check_header(b""), Err(LoadError::NotWasm { .. })));
        let err = check_header(b"hello world, not wasm")
            .unwrap_err()
            .to_string();
        assert!(err.contains("the text \"hello world, not\""), "{err}");
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
