//! Start-up: the stored state comes back, and every app compiled here
//! before is served at once. Component bytes are checked on the way: a
//! file that no longer matches its sha256 is moved aside and reported, and
//! the controller fetches it again from a peer.

use super::Node;
use crate::desired::Desired;
use crate::store::Corrupt;

impl Node {
    /// Brings back every stored record, and serves at once every app this
    /// node compiled before (its code is cached, so it loads in
    /// milliseconds). The controller installs whatever else placement puts
    /// here (for a mesh of one, everything) and trims what it puts
    /// elsewhere once the other holders are ready. An app that fails to
    /// load is logged and kept in the store, never dropped. Blocks.
    pub(crate) fn restore(&self) -> anyhow::Result<usize> {
        let records = self.store.records()?;
        let horizon = self.store.horizon()?;
        let removed = self.store.sweep()?;
        if removed > 0 {
            tracing::info!(
                files = removed,
                "swept component files no deployment refers to"
            );
        }
        let desired = Desired::new(records, horizon);
        let mut restored = 0;
        for (record, spec) in desired.apps() {
            if !self.store.has_component(&spec.component) {
                continue;
            }
            let loaded = self
                .store
                .read_component(&spec.component)
                .and_then(|bytes| Ok(self.runtime.compile_cached(&bytes)?));
            match loaded {
                Ok(Some(compiled)) => {
                    self.install(&compiled, spec, record.version);
                    restored += 1;
                }
                // Not compiled here before: the controller compiles it.
                Ok(None) => {}
                Err(error) => match error.downcast_ref::<Corrupt>() {
                    Some(corrupt) => tracing::error!(
                        app = %spec.name,
                        path = %corrupt.path.display(),
                        expected = %corrupt.expected,
                        actual = %corrupt.actual,
                        moved_to = %corrupt.moved.display(),
                        "the component file of an app no longer matches its sha256 (damaged on disk); it is not served from it, and is fetched again from a peer that has it; with no peer, deploy it again: `shoal deploy FILE.wasm --name {}`",
                        spec.name
                    ),
                    None => {
                        tracing::error!(app = %spec.name, error = format!("{error:#}"), "stored app could not be loaded")
                    }
                },
            }
        }
        self.set_desired(desired);
        Ok(restored)
    }
}
