//! Bindings generated from `wit/plugin.wit`, one module per world. The shared
//! `types` and `host` interfaces are generated once (in `source`) and reused
//! by the other worlds, so a `Batch` is the same Rust type everywhere.

/// The `source` world.
pub mod source {
    wit_bindgen::generate!({
        world: "source",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_source_world",
        default_bindings_module: "sluice_sdk::bindings::source",
        additional_derives: [PartialEq],
    });
}

/// The `transform` world.
pub mod transform {
    wit_bindgen::generate!({
        world: "transform",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_transform_world",
        default_bindings_module: "sluice_sdk::bindings::transform",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::source::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::source::sluice::plugin::host,
        },
    });
}

/// The `columnar-transform` world.
pub mod columnar_transform {
    wit_bindgen::generate!({
        world: "columnar-transform",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_columnar_transform_world",
        default_bindings_module: "sluice_sdk::bindings::columnar_transform",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::source::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::source::sluice::plugin::host,
        },
    });
}

/// The `destination` world.
pub mod destination {
    wit_bindgen::generate!({
        world: "destination",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_destination_world",
        default_bindings_module: "sluice_sdk::bindings::destination",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::source::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::source::sluice::plugin::host,
        },
    });
}

/// The `estimate` world: `estimate-api` alone. A component that exports it
/// beside `source` is an `estimable-source` (as with `lookup` below).
pub mod estimate {
    wit_bindgen::generate!({
        world: "estimate",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_estimate_world",
        default_bindings_module: "sluice_sdk::bindings::estimate",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::source::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::source::sluice::plugin::host,
        },
    });
}

/// The `lookup` world: `lookup-api` alone. A component that exports it
/// beside `destination` is a `verifiable-destination` (the component
/// merges the two worlds' types; their export macros have distinct names).
pub mod lookup {
    wit_bindgen::generate!({
        world: "lookup",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_lookup_world",
        default_bindings_module: "sluice_sdk::bindings::lookup",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::source::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::source::sluice::plugin::host,
        },
    });
}

/// The `warehouse-diff` world: `warehouse-diff-api` alone. A component that
/// exports it beside `source` is a `warehouse-diff-source`.
pub mod warehouse_diff {
    wit_bindgen::generate!({
        world: "warehouse-diff",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_warehouse_diff_world",
        default_bindings_module: "sluice_sdk::bindings::warehouse_diff",
        with: {
            "sluice:plugin/types@0.1.0": crate::bindings::source::sluice::plugin::types,
            "sluice:plugin/host@0.1.0": crate::bindings::source::sluice::plugin::host,
        },
    });
}
