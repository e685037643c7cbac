//! Host-side bindings for the plugin worlds of `wit/plugin.wit`.
//!
//! `types` and `host` are generated once (with the `source` world) and shared
//! by the other two, so a `Batch` read from a source is the same Rust type
//! that is handed to a transform or a destination.

mod source_world {
    wasmtime::component::bindgen!({
        world: "source",
        path: "../../wit",
        imports: { default: trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

mod transform_world {
    wasmtime::component::bindgen!({
        world: "transform",
        path: "../../wit",
        exports: { default: async },
        with: {
            "sluice:plugin/types": super::source_world::sluice::plugin::types,
            "sluice:plugin/host": super::source_world::sluice::plugin::host,
        },
    });
}

mod columnar_transform_world {
    wasmtime::component::bindgen!({
        world: "columnar-transform",
        path: "../../wit",
        exports: { default: async },
        with: {
            "sluice:plugin/types": super::source_world::sluice::plugin::types,
            "sluice:plugin/host": super::source_world::sluice::plugin::host,
        },
    });
}

mod destination_world {
    wasmtime::component::bindgen!({
        world: "destination",
        path: "../../wit",
        exports: { default: async },
        with: {
            "sluice:plugin/types": super::source_world::sluice::plugin::types,
            "sluice:plugin/host": super::source_world::sluice::plugin::host,
        },
    });
}

/// Only its `estimate-api` export is used: a source that exports it is
/// instantiated with the `source` bindings and its estimate loaded from the
/// same instance (see `instance.rs`).
mod estimable_source_world {
    wasmtime::component::bindgen!({
        world: "estimable-source",
        path: "../../wit",
        exports: { default: async },
        with: {
            "sluice:plugin/types": super::source_world::sluice::plugin::types,
            "sluice:plugin/host": super::source_world::sluice::plugin::host,
        },
    });
}

/// Only its `lookup-api` export is used: a destination that exports it is
/// instantiated with the `destination` bindings and its lookup loaded from
/// the same instance (see `instance.rs`).
mod verifiable_destination_world {
    wasmtime::component::bindgen!({
        world: "verifiable-destination",
        path: "../../wit",
        exports: { default: async },
        with: {
            "sluice:plugin/types": super::source_world::sluice::plugin::types,
            "sluice:plugin/host": super::source_world::sluice::plugin::host,
        },
    });
}

/// Only its `warehouse-diff-api` export is used: a source that exports it
/// is instantiated with the `source` bindings and its diff loaded from the
/// same instance (see `instance.rs`).
mod warehouse_diff_source_world {
    wasmtime::component::bindgen!({
        world: "warehouse-diff-source",
        path: "../../wit",
        exports: { default: async },
        with: {
            "sluice:plugin/types": super::source_world::sluice::plugin::types,
            "sluice:plugin/host": super::source_world::sluice::plugin::host,
        },
    });
}

pub use columnar_transform_world::exports::sluice::plugin::columnar_transform_api;
pub use columnar_transform_world::{ColumnarTransform, ColumnarTransformPre};
pub use destination_world::exports::sluice::plugin::destination_api;
pub use destination_world::{Destination, DestinationIndices, DestinationPre};
pub use estimable_source_world::exports::sluice::plugin::estimate_api;
pub use source_world::exports::sluice::plugin::source_api;
pub use source_world::sluice::plugin::host;
pub use source_world::sluice::plugin::types;
pub use source_world::{Source, SourceIndices, SourcePre};
pub use transform_world::exports::sluice::plugin::transform_api;
pub use transform_world::{Transform, TransformPre};
pub use verifiable_destination_world::exports::sluice::plugin::lookup_api;
pub use warehouse_diff_source_world::exports::sluice::plugin::warehouse_diff_api;
