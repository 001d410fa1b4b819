//! Compiling components in a child process, `shoal compile-worker`.
//!
//! Cranelift's heap (tens of MB for a large component, kept by the
//! allocator after it is freed) and its code pages would otherwise stay
//! resident in a server that compiles once and then serves for days. The
//! child is this same binary, so it builds an engine of the same
//! configuration; the runtime loads its output like a cache entry, and
//! compiles in-process only if that output does not load.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use clap::Args;
use shoal_runtime::{EngineFlavor, LoadError, Precompiler, RuntimeConfig};

/// The settings of the engine a child compiles for.
#[derive(Args, Debug, Clone)]
pub(crate) struct EngineFlags {
    #[arg(long)]
    max_instances: u32,
    #[arg(long)]
    max_memory_per_instance: u64,
}

impl EngineFlags {
    fn of(config: &RuntimeConfig) -> Self {
        EngineFlags {
            max_instances: config.max_instances,
            max_memory_per_instance: config.max_memory_per_instance,
        }
    }

    fn config(&self) -> RuntimeConfig {
        RuntimeConfig {
            max_instances: self.max_instances,
            max_memory_per_instance: self.max_memory_per_instance,
            ..RuntimeConfig::default()
        }
    }
}

/// Runs `shoal compile-worker` for every component to compile.
#[derive(Debug)]
pub(crate) struct ChildCompiler {
    exe: PathBuf,
    flags: EngineFlags,
}

impl ChildCompiler {
    /// A compiler for engines built from `config`; `None` (compile
    /// in-process) when this binary cannot find itself.
    pub(crate) fn for_engine(config: &RuntimeConfig) -> Option<Arc<dyn Precompiler>> {
        match std::env::current_exe() {
            Ok(exe) => Some(Arc::new(ChildCompiler {
                exe,
                flags: EngineFlags::of(config),
            })),
            Err(error) => {
                tracing::warn!(%error, "cannot find this binary; components compile in-process");
                None
            }
        }
    }
}

/// Exit status of a child that found the component invalid.
const INVALID: i32 = 3;

impl Precompiler for ChildCompiler {
    fn precompile(&self, bytes: &[u8], flavor: EngineFlavor) -> Result<Vec<u8>, LoadError> {
        let failed = |what: String| LoadError::Compiler(format!("{what}; see the host's log"));
        let mut command = Command::new(&self.exe);
        command.arg("compile-worker");
        if flavor == EngineFlavor::Concurrent {
            command.arg("--concurrent");
        }
        let mut child = command
            .arg("--max-instances")
            .arg(self.flags.max_instances.to_string())
            .arg("--max-memory-per-instance")
            .arg(self.flags.max_memory_per_instance.to_string())
            .env("SHOAL_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "cannot start `{} compile-worker`: {e}",
                    self.exe.display()
                ))
            })?;
        // Feed stdin from another thread while this one drains stdout, so
        // neither pipe fills up and stalls the other.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = bytes.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let output = child
            .wait_with_output()
            .map_err(|e| failed(format!("the compiler process failed: {e}")))?;
        let fed = feeder.join().unwrap_or(Ok(()));
        let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
        match output.status.code() {
            Some(0) => match fed {
                Ok(()) => Ok(output.stdout),
                Err(e) => Err(failed(format!(
                    "could not hand the component to the compiler process: {e}"
                ))),
            },
            Some(INVALID) => Err(LoadError::Invalid(message)),
            _ => Err(failed(format!(
                "the compiler process ended with {}{}",
                output.status,
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ))),
        }
    }
}

/// Compile a component for the host (internal): the bytes on stdin, the code on stdout.
#[derive(Args, Debug)]
pub(crate) struct CompileWorker {
    #[command(flatten)]
    engine: EngineFlags,
    /// For the engine with component-model concurrency (else the plain one).
    #[arg(long)]
    concurrent: bool,
}

impl CompileWorker {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        let flavor = if self.concurrent {
            EngineFlavor::Concurrent
        } else {
            EngineFlavor::Plain
        };
        match shoal_runtime::precompile(&self.engine.config(), flavor, &bytes) {
            Ok(code) => {
                std::io::stdout().write_all(&code)?;
                Ok(())
            }
            Err(LoadError::Invalid(reason)) => {
                eprint!("{reason}");
                std::process::exit(INVALID);
            }
            Err(error) => Err(error.into()),
        }
    }
}
